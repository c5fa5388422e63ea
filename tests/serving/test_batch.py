"""Batch scoring in chunks (local and on Ray), and packaging for containers/Kubernetes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

import loopline as ll
from loopline.core.context import Context
from loopline.errors import InvalidInput
from loopline.serving.batch import score
from loopline.serving.package import app_name, package
from tests.cli_run import run_loopline
from tests.conftest import seeded
from tests.serving.helpers import (
    FEATURES,
    good_model,
    register,
    register_without_example,
    toy_data,
)


@seeded
def model_uri() -> str:
    """A registered model, in the test's ``embedded_ctx`` store."""
    data = toy_data(200)
    version = register(good_model(data), "churn", data)
    return f"models:/churn/{version}"


def test_scoring_a_parquet_file_in_chunks_keeps_rows_and_adds_the_version(
    model_uri: str, tmp_path: Path
) -> None:
    frame = toy_data(2500, seed=5).drop(columns=["label"]).assign(id=range(2500))
    src = tmp_path / "events.parquet"
    frame.to_parquet(src, row_group_size=700)
    seen: list[tuple[int, int | None]] = []
    report = score(
        model_uri,
        src,
        tmp_path / "out.parquet",
        chunk_rows=600,
        probabilities=True,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert (report.rows, report.model_version) == (2500, "1") and report.chunks >= 5
    assert seen[-1] == (2500, 2500) and len(seen) == report.chunks
    out = pq.read_table(tmp_path / "out.parquet").to_pandas()
    assert list(out.columns) == [
        *FEATURES,
        "id",
        "prediction",
        "proba_0",
        "proba_1",
        "model_version",
    ]
    assert out["id"].tolist() == list(range(2500)) and set(out["model_version"]) == {"1"}
    expected = ll.registry.load(model_uri).predict(frame[FEATURES])
    assert out["prediction"].tolist() == expected.tolist()
    assert not (tmp_path / ".out.parquet.part").exists()


def test_scoring_keeps_the_input_columns_exactly_ids_past_2_53_with_nulls_included(
    model_uri: str, tmp_path: Path
) -> None:
    import pyarrow as pa

    frame = toy_data(10, seed=8).drop(columns=["label"])
    # An id column with a null went through pandas as float64: ids were rounded to
    # the nearest double, so 2**53 + 3 and 2**53 + 5 both became 2**53 + 4.
    ids = [2**53 + 1 + 2 * i if i != 3 else None for i in range(10)]
    table = pa.Table.from_pandas(frame, preserve_index=False).append_column(
        "cid", pa.array(ids, pa.int64())
    )
    table = table.append_column(
        "seen", pa.array([1_700_000_000_123_456_789 + i for i in range(10)], pa.timestamp("ns"))
    )
    pq.write_table(table, tmp_path / "ids.parquet")
    score(model_uri, tmp_path / "ids.parquet", tmp_path / "out.parquet", chunk_rows=4)
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.select(table.schema.names).equals(table)  # same values, same types
    assert out.schema.names == [*table.schema.names, "prediction", "model_version"]
    expected = ll.registry.load(model_uri).predict(frame[FEATURES])
    assert out["prediction"].to_pylist() == expected.tolist()


@pytest.mark.parametrize(
    ("column", "proba"),
    [("prediction", False), ("model_version", False), ("proba_1", True)],
)
def test_an_input_column_scoring_would_overwrite_is_refused_naming_it(
    model_uri: str, tmp_path: Path, column: str, proba: bool
) -> None:
    frame = toy_data(20, seed=9).drop(columns=["label"]).assign(**{column: -1})
    frame.to_parquet(tmp_path / "in.parquet")
    with pytest.raises(InvalidInput, match=f"has a column '{column}'") as e:
        score(model_uri, tmp_path / "in.parquet", tmp_path / "out.parquet", probabilities=proba)
    assert e.value.field == column
    assert not (tmp_path / "out.parquet").exists()


def test_scoring_csv_to_csv_with_the_cli_and_a_bad_chunk_names_rows_and_column(
    model_uri: str, tmp_path: Path, embedded_ctx: Context
) -> None:
    frame = toy_data(300, seed=6).drop(columns=["label"])
    src = tmp_path / "events.csv"
    frame.to_csv(src, index=False)
    env = {
        "LOOPLINE_URI": embedded_ctx.settings.metadata_uri,
        "LOOPLINE_ARTIFACTS": embedded_ctx.settings.artifacts_uri,
    }
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "loopline.cli.main",
            "score",
            model_uri,
            str(src),
            str(tmp_path / "scored.csv"),
            "--chunk-rows",
            "100",
        ],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **env},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "scored 300 rows in 3 chunk(s)" in out.stdout and "scoring" in out.stdout
    scored = pd.read_csv(tmp_path / "scored.csv")
    assert len(scored) == 300 and set(scored["model_version"]) == {1}

    broken = frame.astype({"bucket": "float64"})
    broken.loc[150, "bucket"] = None
    broken.to_parquet(tmp_path / "broken.parquet")
    with pytest.raises(InvalidInput, match=r"rows 100\.\.199: column 'bucket' is NaN") as e:
        score(model_uri, tmp_path / "broken.parquet", tmp_path / "x.parquet", chunk_rows=100)
    assert e.value.field == "bucket"
    assert not (tmp_path / "x.parquet").exists()
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b,bucket\n0.1,0.2,1\n0.3,0.4\n")
    with pytest.raises(InvalidInput, match="cannot read") as e:
        score(model_uri, ragged, tmp_path / "y.csv")
    assert e.value.field == "input"


@pytest.mark.parametrize(
    ("options", "field", "words"),
    [
        ({"replicas": 12, "max_replicas": 10}, "replicas", "replicas 12 must be between 1 and"),
        ({"namespace": "Bad NS!"}, "namespace", "not a Kubernetes namespace name"),
        ({"namespace": "a" * 64}, "namespace", "not a Kubernetes namespace name"),
        ({"namespace": "-ml"}, "namespace", "not a Kubernetes namespace name"),
    ],
    ids=["replicas-above-max", "namespace-chars", "namespace-too-long", "namespace-dash"],
)
def test_package_refuses_a_spec_kubernetes_would_refuse(
    model_uri: str, tmp_path: Path, options: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(InvalidInput, match=words) as e:
        package("models:/churn", tmp_path / "pkg", **options)
    assert e.value.field == field
    assert not (tmp_path / "pkg").exists()  # nothing written


def test_package_into_a_file_names_the_out_dir(model_uri: str, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(InvalidInput, match="is a file, not a folder") as e:
        package("models:/churn", afile)
    assert e.value.field == "out_dir"
    with pytest.raises(InvalidInput, match="cannot make the folder") as e:
        package("models:/churn", afile / "pkg")
    assert e.value.field == "out_dir" and afile.read_text() == "x"


def _score_cli(ctx: Context, *args: str) -> subprocess.CompletedProcess[str]:
    return run_loopline(ctx, "score", *args, timeout=300)


def test_scoring_a_file_with_inf_or_a_stray_word_names_the_column_and_the_file_row(
    model_uri: str, tmp_path: Path, embedded_ctx: Context
) -> None:
    frame = toy_data(300, seed=7).drop(columns=["label"])
    with_inf = frame.copy()
    with_inf.loc[158, "b"] = float("inf")
    with_inf.to_csv(tmp_path / "inf.csv", index=False)
    with_inf.to_parquet(tmp_path / "inf.parquet")
    with pytest.raises(InvalidInput, match=r"column 'b' is inf in row 158") as e:
        score(model_uri, tmp_path / "inf.parquet", tmp_path / "x.parquet", chunk_rows=100)
    assert e.value.field == "b"
    done = _score_cli(
        embedded_ctx, model_uri, str(tmp_path / "inf.csv"), str(tmp_path / "o.csv"),
        "--chunk-rows", "100",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "column 'b' is inf in row 158" in done.stderr and "Traceback" not in done.stderr

    # One word in a float column: pandas reads the whole column as text.
    words = frame.astype({"a": object})
    words.loc[205, "a"] = "abc"
    words.to_csv(tmp_path / "word.csv", index=False)
    done = _score_cli(embedded_ctx, model_uri, str(tmp_path / "word.csv"), str(tmp_path / "o.csv"))
    assert done.returncode == 2, done.stderr
    assert "column 'a' expects float, got str 'abc' (row 205)" in done.stderr
    # In chunks: the chunk that holds the word, the word and its row. Before, the word made
    # the whole column text, and the first chunk failed on its first number.
    with pytest.raises(InvalidInput) as e:
        score(model_uri, tmp_path / "word.csv", tmp_path / "o.csv", chunk_rows=100)
    assert e.value.message == "rows 200..299: column 'a' expects float, got str 'abc' (row 205)"
    assert e.value.field == "a"


def test_a_csv_is_copied_as_text_and_only_the_features_are_parsed(
    model_uri: str, tmp_path: Path
) -> None:
    """Ids were read by type inference: 007, 0012, 1e3 and NA came out as 7, 12, 1000 and
    an empty field (a float64 column in Parquet)."""
    import csv

    src = tmp_path / "ids.csv"
    src.write_text(
        "id,a,b,bucket,note\n"
        "007,0.1,0.2,1,NA\n"
        "0012, 0.3 ,-1e-1,2.0,\n"
        "1e3,inf,0.5,3,x y\n"
        "NA,-0.5,0.25,0,null\n"
        ',0.4,0.1,1,"a,b"\n'
    )
    ids = ["007", "0012", "1e3", "NA", ""]
    for out in ("out.csv", "out.parquet"):
        with pytest.raises(InvalidInput, match=r"column 'a' is inf in row 2"):
            score(model_uri, src, tmp_path / out, chunk_rows=2)
    src.write_text(src.read_text().replace("inf", "0.7"))
    score(model_uri, src, tmp_path / "out.parquet", chunk_rows=2)
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column("id").to_pylist() == ids and str(table.schema.field("id").type) == "string"
    assert table.column("note").to_pylist() == ["NA", "", "x y", "null", "a,b"]
    # The features as their signature types: a and b floats, bucket an int (2.0 is 2).
    assert table.column("a").to_pylist() == [0.1, 0.3, 0.7, -0.5, 0.4]
    assert table.column("bucket").to_pylist() == [1, 2, 3, 0, 1]
    assert [str(table.schema.field(n).type) for n in FEATURES] == ["double", "double", "int64"]
    frame = pd.DataFrame({"a": [0.1, 0.3, 0.7, -0.5, 0.4], "b": [0.2, -0.1, 0.5, 0.25, 0.1]})
    expected = ll.registry.load(model_uri).predict(frame.assign(bucket=[1, 2, 3, 0, 1]))
    assert table.column("prediction").to_pylist() == expected.tolist()

    score(model_uri, src, tmp_path / "out.csv", chunk_rows=2)
    with (tmp_path / "out.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == ids and [r["note"] for r in rows][-1] == "a,b"


def test_a_bad_csv_value_is_named_by_its_row_and_value_in_any_chunk(
    model_uri: str, tmp_path: Path, embedded_ctx: Context
) -> None:
    """One word among numbers made the whole column text: the error named the first row of
    the first chunk and its number ('rows 0..2: ... got str '0.0' (row 0)')."""
    lines = ["a,b,bucket", *(f"{i / 10},0.5,1" for i in range(7)), "0.9,abc,1"]
    lines += [f"{i / 10},0.5,1" for i in range(5)]
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    done = _score_cli(
        embedded_ctx, model_uri, str(tmp_path / "bad.csv"), str(tmp_path / "o.csv"),
        "--chunk-rows", "3",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "rows 6..8: column 'b' expects float, got str 'abc' (row 7)" in done.stderr
    assert not (tmp_path / "o.csv").exists()
    # A fraction in an int column, and a word in it, are named the same way.
    for value, shown in (("1.5", "1.5"), ("two", "str 'two'")):
        text = "a,b,bucket\n0.1,0.2,1\n0.1,0.2,3\n0.1,0.2," + value + "\n"
        (tmp_path / "int.csv").write_text(text)
        with pytest.raises(InvalidInput, match=r"column 'bucket' .*" + shown + r".*row 2") as e:
            score(model_uri, tmp_path / "int.csv", tmp_path / "o.parquet")
        assert e.value.field == "bucket"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own deprecations
def test_scoring_on_ray(model_uri: str, tmp_path: Path) -> None:
    frame = toy_data(1000, seed=7).drop(columns=["label"])
    src = tmp_path / "events.parquet"
    frame.to_parquet(src)
    report = score(model_uri, src, tmp_path / "out.parquet", chunk_rows=250, executor="ray")
    assert report.rows == 1000 and report.executor == "ray"
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert len(out) == 1000 and set(out["model_version"]) == {"1"}
    expected = ll.registry.load(model_uri).predict(frame[FEATURES])
    merged = out.sort_values(FEATURES).reset_index(drop=True)
    want = frame.assign(prediction=expected).sort_values(FEATURES).reset_index(drop=True)
    assert merged["prediction"].tolist() == want["prediction"].tolist()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own deprecations
def test_a_bad_row_on_ray_is_named_by_its_row_in_the_input_as_locally(
    model_uri: str, tmp_path: Path, embedded_ctx: Context
) -> None:
    frame = toy_data(2000, seed=8).drop(columns=["label"])
    frame.loc[1612, "b"] = float("inf")
    frame.to_parquet(tmp_path / "inf.parquet", row_group_size=700)  # chunks cross groups
    said = {}
    for executor in ("local", "ray"):
        with pytest.raises(InvalidInput, match=r"column 'b' is inf in row 1612") as e:
            score(
                model_uri, tmp_path / "inf.parquet", tmp_path / f"{executor}.parquet",
                chunk_rows=250, executor=executor,
            )  # fmt: skip
        assert e.value.field == "b"
        said[executor] = e.value.message
    assert (
        said["ray"]
        == said["local"]
        == ("rows 1400..1649: column 'b' is inf in row 1612; the model takes finite numbers only")
    )
    frame.drop(index=1612).to_parquet(tmp_path / "ok.parquet", row_group_size=700)
    report = score(
        model_uri, tmp_path / "ok.parquet", tmp_path / "ok-out.parquet", chunk_rows=250,
        executor="ray",
    )  # fmt: skip
    assert report.rows == 1999

    # The CLI on Ray: a CSV's bad row, by its row in the file, exit 2, no Ray traceback.
    words = toy_data(600, seed=9).drop(columns=["label"])
    words.loc[433, "a"] = float("nan")
    words.to_csv(tmp_path / "nan.csv", index=False)
    done = _score_cli(
        embedded_ctx, model_uri, str(tmp_path / "nan.csv"), str(tmp_path / "o.csv"),
        "--chunk-rows", "100", "--executor", "ray",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "rows 400..499: column 'a' is NaN/null in row 433" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_package_writes_valid_kubernetes_manifests_and_a_pinned_dockerfile(
    model_uri: str, tmp_path: Path
) -> None:
    files = package(
        "models:/churn",
        tmp_path / "pkg",
        image="registry.local/churn:1",
        replicas=3,
        max_replicas=6,
        namespace="ml",
    )
    names = sorted(str(f.relative_to(tmp_path / "pkg")) for f in files)
    assert names == [
        "Dockerfile",
        "README.md",
        "k8s/deployment.yaml",
        "k8s/hpa.yaml",
        "k8s/service.yaml",
        f"wheels/loopline-{ll.__version__}-py3-none-any.whl",
    ]
    kinds = {}
    for path in (tmp_path / "pkg" / "k8s").iterdir():
        doc = yaml.safe_load(path.read_text())
        # offline: kubernetes-validate ships the OpenAPI schemas of each Kubernetes version
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
        kinds[doc["kind"]] = doc
    assert set(kinds) == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.local/churn:1"
    assert kinds["Deployment"]["spec"]["replicas"] == 3
    assert kinds["HorizontalPodAutoscaler"]["spec"]["maxReplicas"] == 6
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert kinds["Service"]["metadata"]["namespace"] == "ml"
    docker = (tmp_path / "pkg" / "Dockerfile").read_text()
    from sklearn import __version__ as sklearn_version

    assert f'"scikit-learn=={sklearn_version}"' in docker
    assert '"--model", "models:/churn"' in docker and "USER 10001" in docker

    broken = dict(kinds["Deployment"])
    broken["spec"] = {**broken["spec"], "replicas": "three"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.30.0", strict=True)
    assert app_name("Churn Model_v2") == "loopline-churn-model-v2"
    with pytest.raises(InvalidInput):
        package("churn", tmp_path / "x")


def test_scoring_a_file_into_itself_is_refused_and_the_input_kept(
    model_uri: str, tmp_path: Path
) -> None:
    src = tmp_path / "events.parquet"
    toy_data(50).drop(columns=["label"]).to_parquet(src)
    before = src.read_bytes()
    with pytest.raises(InvalidInput, match="scoring would overwrite the data it reads") as e:
        score(model_uri, src, src)
    assert e.value.field == "output" and src.read_bytes() == before
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "a.parquet").write_bytes(before)
    with pytest.raises(InvalidInput, match="inside its folder") as e:
        score(model_uri, folder, folder / "scored.parquet")
    assert e.value.field == "output" and sorted(p.name for p in folder.iterdir()) == ["a.parquet"]


def test_an_existing_folder_as_the_output_is_refused_before_scoring(
    model_uri: str, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    (work / "scored.csv").mkdir(parents=True)
    src = work / "events.csv"
    toy_data(50).drop(columns=["label"]).to_csv(src, index=False)
    with pytest.raises(InvalidInput, match="is a folder; scoring writes one csv file") as e:
        score(model_uri, src, work / "scored.csv")
    assert e.value.field == "output"  # and no hidden .scored.csv.part left behind
    assert sorted(p.name for p in work.iterdir()) == ["events.csv", "scored.csv"]


def test_probabilities_of_a_model_without_them_are_refused_naming_the_option(
    embedded_ctx: Context, tmp_path: Path
) -> None:
    from sklearn.svm import LinearSVC

    data = toy_data(200)
    version = register(LinearSVC().fit(data[FEATURES], data["label"]), "svm", data)
    src = tmp_path / "events.csv"
    data.drop(columns=["label"]).to_csv(src, index=False)
    out = tmp_path / "o.csv"
    done = _score_cli(embedded_ctx, f"models:/svm/{version}", str(src), str(out), "--proba")
    assert done.returncode == 2, done.stderr
    assert "LinearSVC gives no class probabilities" in done.stderr, done.stderr
    assert "without --proba" in done.stderr and not out.exists()


def test_a_model_logged_without_an_example_is_given_the_columns_it_was_fitted_on(
    embedded_ctx: Context, tmp_path: Path
) -> None:
    data = toy_data(200)
    model = good_model(data)
    with ll.start_run(experiment="no-example") as run:
        run.log_model(model, "model")  # no input example: no signature
    version = ll.registry.register(run, "bare").version
    # An id first and the features in another order than at fit.
    frame = data.drop(columns=["label"])[["bucket", "b", "a"]].assign(id=range(200))
    for suffix, write in ((".csv", "to_csv"), (".parquet", "to_parquet")):
        src = tmp_path / f"events{suffix}"
        getattr(frame, write)(src, index=False)
        report = score(f"models:/bare/{version}", src, tmp_path / f"scored{suffix}")
        assert report.rows == 200
        out = (pd.read_csv if suffix == ".csv" else pd.read_parquet)(tmp_path / f"scored{suffix}")
        assert out["prediction"].tolist() == model.predict(data[FEATURES]).tolist()
        assert out["id"].tolist() == list(range(200))
    src = tmp_path / "short.parquet"
    frame.drop(columns=["b"]).to_parquet(src)
    with pytest.raises(InvalidInput, match="missing column 'b'") as e:
        score(f"models:/bare/{version}", src, tmp_path / "short-out.parquet")
    assert e.value.field == "b"


def test_a_model_without_a_signature_given_text_names_the_column_and_row(
    tmp_path: Path, embedded_ctx: Context
) -> None:
    # The model raised "could not convert string to float" and `loopline score` exited 1
    # with only that: no column, no row.
    data = toy_data(200)
    version = register_without_example(good_model(data), "nosig")
    # A column of text, as one word makes it: numbers as strings, which the model takes,
    # and the words it does not.
    frame = toy_data(300, seed=3).drop(columns=["label"])
    frame["b"] = frame["b"].map(repr)
    frame.loc[[150, 170], "b"] = ["x", "y"]
    frame.to_parquet(tmp_path / "in.parquet")
    with pytest.raises(InvalidInput) as e:
        score(f"models:/nosig/{version}", tmp_path / "in.parquet", tmp_path / "o.parquet")
    assert e.value.field == "b"
    assert "column 'b' holds text where the model reads numbers ('x' in row 150)" in (
        e.value.message
    )
    assert "could not convert string to float" in e.value.message
    assert not (tmp_path / "o.parquet").exists()
    frame.to_csv(tmp_path / "in.csv", index=False)
    done = _score_cli(
        embedded_ctx, f"models:/nosig/{version}", str(tmp_path / "in.csv"),
        str(tmp_path / "o.csv"), "--chunk-rows", "100",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "rows 100..199: column 'b' holds text" in done.stderr, done.stderr
    assert "('x' in row 150)" in done.stderr and "Traceback" not in done.stderr
