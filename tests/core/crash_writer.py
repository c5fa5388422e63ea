"""Child process for the crash test: writes artifacts and audit rows until killed.

Prints ``ACK <seq> <digest>`` only after both the artifact and its row are committed.
"""

from __future__ import annotations

import os
import sys

import loopline


def main() -> None:
    uri, artifacts = sys.argv[1], sys.argv[2]
    ctx = loopline.init(uri=uri, artifacts=artifacts)
    i = 0
    while True:
        i += 1
        data = os.urandom(1024 * (1 + i % 64)) + str(i).encode()
        digest = ctx.artifacts.put_bytes(data)
        with ctx.engine.begin() as conn:
            event = ctx.audit(
                conn,
                action="artifact.put",
                object_type="artifact",
                object_id=digest,
                after={"size": len(data)},
            )
        sys.stdout.write(f"ACK {event.seq} {digest}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
