"""The GPU check (stsflow.gpu_check) through its command line, on the CPU with a tiny shape: the
float64 reference separates float32 (agrees to rounding) from bfloat16 (about 3 significant
digits), every figure is present, and the JSON is written."""

from __future__ import annotations

import json

from stsflow import gpu_check


def test_gpu_check_runs_on_a_cpu_and_measures_against_the_float64_reference(tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--device", "cpu", "--shapes", "tiny", "--batch", "2", "--tokens",
                           "48", "--ref-tokens", "24", "--k", "8", "--threads", "1",
                           "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["device"] == "cpu"
    tiny = result["shapes"]["tiny"]
    assert (tiny["layers"], tiny["hooked_layer"], tiny["sae_width"]) == (4, 2, 16 * 64)
    f32, bf16 = tiny["dtypes"]["float32"], tiny["dtypes"]["bfloat16"]
    assert f32["resid_rel_error"] < 1e-5 and f32["feature_rel_error"] < 1e-5
    assert f32["active_overlap"] > 0.999
    assert 1e-4 < bf16["resid_rel_error"] < 5e-2  # bfloat16 keeps 8 bits of mantissa
    assert bf16["resid_rel_error"] > 100 * f32["resid_rel_error"]
    for row in (f32, bf16):
        assert all(v > 0 for v in row["tokens_per_s"].values())
        assert row["mfu"] is None and row["peak_mb"]["extraction"] is None  # no GPU
        assert row["estimated_gpu_mb"] >= 1000
    printed = capsys.readouterr().out
    assert "residual rel. error" in printed and "extraction (stop + SAE + shard)" in printed
