import json

import pytest

from launch.results import InvalidResultError, list_result_files, read_result

GOOD = {
    "format": 1,
    "trial_id": "t0001",
    "status": "ok",
    "top1": 91.5,
    "top5": 99.0,
    "num_val_images": 899,
    "epochs": 3,
    "wall_s": 12.5,
    "gpu_hours": 0.0,
    "num_params": 1234,
    "world_size": 2,
}


def _write(path, data):
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_result_valid_file(tmp_path):
    result = read_result(_write(tmp_path / "t0001.json", GOOD), "t0001")
    assert result.top1 == 91.5
    assert result.metric("top1") == 91.5
    assert result.num_val_images == 899


def test_result_missing_file_not_ready(tmp_path):
    assert read_result(tmp_path / "t0001.json", "t0001") is None


@pytest.mark.parametrize("text", ["", "   ", '{"format": 1, "trial_id": "t0001", "to'])
def test_result_partial_file_not_ready(tmp_path, text):
    assert read_result(_write(tmp_path / "t0001.json", text), "t0001") is None


def test_result_other_trial_rejected(tmp_path):
    path = _write(tmp_path / "t0001.json", {**GOOD, "trial_id": "t0002"})
    with pytest.raises(InvalidResultError, match="names trial 't0002', expected 't0001'"):
        read_result(path, "t0001")


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("top1", "91", "top1"),
        ("top1", 140.0, "outside"),
        ("num_val_images", 0, "positive"),
        ("status", "weird", "status"),
        ("format", 2, "unsupported result format"),
        ("epochs", True, "epochs"),
    ],
)
def test_result_schema_violations(tmp_path, key, value, message):
    path = _write(tmp_path / "t0001.json", {**GOOD, key: value})
    with pytest.raises(InvalidResultError, match=message):
        read_result(path, "t0001")


def test_result_nan_rejected(tmp_path):
    path = _write(tmp_path / "t0001.json", json.dumps(GOOD).replace("91.5", "NaN"))
    with pytest.raises(InvalidResultError, match="not finite"):
        read_result(path, "t0001")


def test_result_missing_key_rejected(tmp_path):
    data = dict(GOOD)
    del data["top5"]
    with pytest.raises(InvalidResultError, match="missing key 'top5'"):
        read_result(_write(tmp_path / "t0001.json", data), "t0001")


def test_result_listing(tmp_path):
    _write(tmp_path / "t0001.json", GOOD)
    _write(tmp_path / "t0002.json.tmp", GOOD)
    assert list_result_files(tmp_path) == {"t0001.json"}
    assert list_result_files(tmp_path / "missing") == set()
