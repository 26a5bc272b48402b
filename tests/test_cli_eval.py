"""fcam-eval on saved score maps: numbers equal the reference loop, outputs, and bad input
giving a one-line error with a non-zero exit and no traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fcam.cli.eval import main
from fcam.data import load_gt_mask, load_metadata
from fcam.engine.saved_maps import prepare_saved_map
from fcam.engine.scoring import AUTO, ScoringPool, cpu_model, default_num_workers, resolve_num_workers
from fcam.errors import FcamError
from fcam.metrics import box_hits, reference

SIZE = 32


def write_maps(root: Path, meta, rng, size=SIZE) -> list[np.ndarray]:
    """Noisy blob maps in [0,1] (float64, max exactly 1) saved as <image_id>.npy."""
    maps = []
    for image_id in meta.image_ids:
        low = rng.random((6, 6)) ** 2
        scoremap = np.kron(low, np.ones((size // 6 + 1, size // 6 + 1)))[:size, :size]
        scoremap = scoremap / scoremap.max()
        path = root / f"{image_id}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, scoremap)
        maps.append(scoremap)
    return maps


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_box_maps_equal_reference_and_write_outputs(synth_root, tmp_path, capsys):
    meta = load_metadata(synth_root / "metadata", "CUB", "test")
    maps = write_maps(tmp_path / "maps", meta, np.random.default_rng(0))
    code, out, err = run(["--scoremap-root", str(tmp_path / "maps"), "--metadata-root", str(synth_root / "metadata"),
                          "--dataset", "CUB", "--split", "test", "--eval-size", str(SIZE),
                          "--cam-curve-interval", "0.01", "--num-workers", "0", "--output", str(tmp_path / "out")],
                         capsys)
    assert code == 0, err
    got = json.loads((tmp_path / "out/metrics.json").read_text())
    expected = reference.box_accuracy(maps, meta.gt_boxes(SIZE), cam_curve_interval=0.01)
    for key in ("MaxBoxAcc", "MaxBoxAccV2", "MaxBoxAccV2_IoU30", "MaxBoxAccV2_IoU50", "MaxBoxAccV2_IoU70"):
        assert got[key] == expected[key]
    assert "MaxBoxAccV2_IoU70" in out  # the table
    assert (tmp_path / "out/curves.csv").stat().st_size > 0 and (tmp_path / "out/curves.png").stat().st_size > 0


def test_mask_maps_equal_reference(synth_root, tmp_path, capsys):
    meta = load_metadata(synth_root / "metadata", "OpenImages", "test")
    maps = write_maps(tmp_path / "maps", meta, np.random.default_rng(1))
    code, _, err = run(["--scoremap-root", str(tmp_path / "maps"), "--metadata-root", str(synth_root / "metadata"),
                        "--mask-root", str(synth_root / "masks"), "--dataset", "OpenImages", "--split", "test",
                        "--eval-size", str(SIZE), "--num-workers", "0", "--output", str(tmp_path / "out")], capsys)
    assert code == 0, err
    masks = [load_gt_mask(synth_root / "masks", *meta.masks[i], size=SIZE) for i in meta.image_ids]
    expected = reference.pixel_ap(maps, [m for m, _ in masks], [g for _, g in masks], cam_curve_interval=0.001)
    assert json.loads((tmp_path / "out/metrics.json").read_text())["PxAP"] == expected


def test_mask_cache_gives_the_same_pxap_and_fills_once(synth_root, tmp_path, capsys):
    meta = load_metadata(synth_root / "metadata", "OpenImages", "test")
    write_maps(tmp_path / "maps", meta, np.random.default_rng(2))
    args = ["--scoremap-root", str(tmp_path / "maps"), "--metadata-root", str(synth_root / "metadata"),
            "--mask-root", str(synth_root / "masks"), "--dataset", "OpenImages", "--split", "test",
            "--eval-size", str(SIZE), "--num-workers", "0"]
    results = []
    for name, extra in (("plain", []), ("cold", ["--mask-cache", str(tmp_path / "cache")]),
                        ("warm", ["--mask-cache", str(tmp_path / "cache")])):
        code, _, err = run([*args, *extra, "--output", str(tmp_path / name)], capsys)
        assert code == 0, err
        results.append(json.loads((tmp_path / name / "metrics.json").read_text())["PxAP"])
        if name == "cold":
            entries = sorted((tmp_path / "cache").rglob("*.bin"))
            assert len(entries) == len(meta.image_ids)
            times = [p.stat().st_mtime_ns for p in entries]
    assert results[0] == results[1] == results[2]
    assert [p.stat().st_mtime_ns for p in entries] == times  # the warm run rewrote nothing
    write_maps(tmp_path / "box_maps", load_metadata(synth_root / "metadata", "CUB", "test"), np.random.default_rng(3))
    box_args = [a.replace("OpenImages", "CUB").replace(str(tmp_path / "maps"), str(tmp_path / "box_maps")) for a in args]
    code, _, err = run([*box_args, "--mask-cache", str(tmp_path / "cache"), "--output", str(tmp_path / "box")], capsys)
    assert code == 0, err
    assert "--mask-cache is ignored: CUB has box annotations" in err


def test_other_sizes_resized_and_out_of_range_needs_normalize(synth_root, tmp_path, capsys):
    meta = load_metadata(synth_root / "metadata", "CUB", "test")
    write_maps(tmp_path / "maps", meta, np.random.default_rng(2), size=16)
    base = ["--scoremap-root", str(tmp_path / "maps"), "--metadata-root", str(synth_root / "metadata"),
            "--dataset", "CUB", "--split", "test", "--eval-size", str(SIZE), "--num-workers", "0"]
    assert run(base + ["--output", str(tmp_path / "a")], capsys)[0] == 0
    first = meta.image_ids[0]
    np.save(tmp_path / "maps" / f"{first}.npy", 5.0 * np.load(tmp_path / "maps" / f"{first}.npy"))
    code, _, err = run(base + ["--output", str(tmp_path / "b")], capsys)
    assert code == 2 and "--normalize" in err and first in err
    assert run(base + ["--normalize", "--output", str(tmp_path / "c")], capsys)[0] == 0


def bad_input_cases(synth_root: Path, tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    meta = load_metadata(synth_root / "metadata", "CUB", "test")
    maps = tmp_path / "maps"
    write_maps(maps, meta, np.random.default_rng(3))
    common = ["--metadata-root", str(synth_root / "metadata"), "--split", "test", "--eval-size", str(SIZE),
              "--num-workers", "0", "--output", str(tmp_path / "out")]
    cases = {}
    broken_meta = tmp_path / "meta"
    shutil.copytree(synth_root / "metadata", broken_meta)
    (broken_meta / "CUB/test/class_labels.txt").unlink()
    cases["missing metadata file"] = (["--scoremap-root", str(maps), "--dataset", "CUB", *common,
                                       "--metadata-root", str(broken_meta)], "class_labels.txt")
    no_map = tmp_path / "no_map"
    shutil.copytree(maps, no_map)
    (no_map / f"{meta.image_ids[1]}.npy").unlink()
    cases["image id without a map"] = (["--scoremap-root", str(no_map), "--dataset", "CUB", *common],
                                       f"{meta.image_ids[1]}.npy")
    nan_map = tmp_path / "nan"
    shutil.copytree(maps, nan_map)
    bad = np.load(nan_map / f"{meta.image_ids[2]}.npy")
    bad[0, 0] = np.nan
    np.save(nan_map / f"{meta.image_ids[2]}.npy", bad)
    cases["map with NaN"] = (["--scoremap-root", str(nan_map), "--dataset", "CUB", *common], "NaN")
    shape_map = tmp_path / "shape"
    shutil.copytree(maps, shape_map)
    np.save(shape_map / f"{meta.image_ids[0]}.npy", np.zeros((2, SIZE, SIZE)))
    cases["wrong shape"] = (["--scoremap-root", str(shape_map), "--dataset", "CUB", *common], "shape")
    cases["unknown dataset"] = (["--scoremap-root", str(maps), "--dataset", "COCO", *common], "COCO")
    oi = load_metadata(synth_root / "metadata", "OpenImages", "test")
    oi_maps = tmp_path / "oi_maps"
    write_maps(oi_maps, oi, np.random.default_rng(4))
    masks = tmp_path / "masks"
    shutil.copytree(synth_root / "masks", masks)
    missing = masks / "OpenImages" / oi.masks[oi.image_ids[0]][0][0]
    missing.unlink()
    cases["mask file missing"] = (["--scoremap-root", str(oi_maps), "--dataset", "OpenImages", "--mask-root",
                                   str(masks), *common], missing.name)
    return cases


def test_bad_input_gives_one_line_error(synth_root, tmp_path, capsys):
    for name, (args, must_name) in bad_input_cases(synth_root, tmp_path).items():
        code, _, err = run(args, capsys)
        assert code == 2, name
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, err)
        assert must_name in lines[0], (name, lines[0])


def test_console_script_exit_code_and_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fcam.cli.eval", "--scoremap-root", str(tmp_path),
                             "--metadata-root", str(tmp_path), "--dataset", "CUB", "--output", str(tmp_path / "o")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: ")


def test_worker_pool_gives_the_numbers_of_one_process(synth_root, tmp_path, capsys):
    """Scoring in 2 worker processes equals scoring in this process."""
    for dataset in ("CUB", "OpenImages"):
        meta = load_metadata(synth_root / "metadata", dataset, "test")
        write_maps(tmp_path / dataset, meta, np.random.default_rng(5))
        args = ["--scoremap-root", str(tmp_path / dataset), "--metadata-root", str(synth_root / "metadata"),
                "--mask-root", str(synth_root / "masks"), "--dataset", dataset, "--split", "test",
                "--eval-size", str(SIZE), "--cam-curve-interval", "0.01"]
        results = []
        for workers in ("0", "2"):
            out = tmp_path / f"{dataset}_{workers}"
            code, _, err = run(args + ["--num-workers", workers, "--output", str(out)], capsys)
            assert code == 0, err
            results.append(json.loads((out / "metrics.json").read_text()))
        assert results[0] == results[1]


def test_scoring_pool_workers_are_fresh_light_interpreters():
    """Workers are new interpreters running fcam.engine.scoring (neither forks of this process nor
    re-runs of its main module) and import no torch; job errors come back as they were raised."""
    probe = ("(__import__('sys').modules['__main__'].__spec__.name, 'torch' in __import__('sys').modules, "
             "__import__('os').getppid())")
    maps = np.random.default_rng(0).random((2, 16, 16))
    found = []
    with ScoringPool(2) as pool:
        pool.submit(found.append, box_hits, maps, [np.array([[0, 0, 8, 8]])] * 2, np.arange(0, 1, 0.1), (30, 50))
        for _ in range(4):
            pool.submit(found.append, eval, probe)  # a builtin: unpickling it imports nothing
        pid = pool._workers[0].process.pid
    hits = [f for f in found if isinstance(f, np.ndarray)]  # results come in the order jobs finish
    assert len(found) == 5 and len(hits) == 1 and hits[0].shape == (2, 3, 10)
    for main_module, has_torch, parent in (f for f in found if isinstance(f, tuple)):
        assert main_module == "fcam.engine.scoring" and not has_torch and parent == os.getpid()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped with the pool
    with pytest.raises(FcamError, match="finite"), ScoringPool(2) as pool:
        pool.submit(found.append, box_hits, np.full((1, 4, 4), np.nan), [np.array([[0, 0, 1, 1]])],
                    np.arange(0, 1, 0.1), (50,))
        pool.drain()
    assert ScoringPool(0)._workers == [] and ScoringPool(1)._workers == []


def test_default_worker_count_shares_the_affinity_among_local_ranks():
    cpus = len(os.sched_getaffinity(0))
    assert default_num_workers() == cpus
    assert default_num_workers(local_world_size=cpus * 2) == 1
    assert resolve_num_workers(AUTO, 1) == cpus and resolve_num_workers(3) == 3
    with pytest.raises(FcamError, match="num_workers"):
        resolve_num_workers(-2)


def test_cpu_model_reads_the_first_model_name(monkeypatch, tmp_path):
    """The machine line of the demo and benchmarks: cpuinfo's first model name, else platform's."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU @ 2.0GHz \nprocessor\t: 1\nmodel name\t: Other\n")
    assert cpu_model(str(cpuinfo)) == "Test CPU @ 2.0GHz"
    monkeypatch.setattr("platform.processor", lambda: "")
    monkeypatch.setattr("platform.machine", lambda: "riscv64")
    assert cpu_model(str(tmp_path / "missing")) == "riscv64"


def test_reference_reads_masks_as_the_fast_path(synth_root):
    """The reference's own mask reading (float32, INTER_NEAREST, > 0.5) equals fcam.data's."""
    meta = load_metadata(synth_root / "metadata", "OpenImages", "test")
    for size in (SIZE, 224):
        for image_id in meta.image_ids:
            paths, ignore = meta.masks[image_id]
            coded = reference_get_mask(synth_root / "masks" / "OpenImages", paths, ignore, size)
            foreground, ignored = load_gt_mask(synth_root / "masks", paths, ignore, size=size)
            assert np.array_equal(coded == 1, foreground) and np.array_equal(coded == 255, ignored)


def reference_get_mask(folder, paths, ignore, size):
    if size == reference.RESIZE_LENGTH:
        return reference.get_mask(str(folder), paths, ignore)
    instances = np.any([reference.load_mask_image(str(folder / p), (size, size)) > 0.5 for p in paths], axis=0)
    ignored = (reference.load_mask_image(str(folder / ignore), (size, size)) > 0.5) & ~instances if ignore else 0
    return instances.astype(np.uint8) + 255 * np.asarray(ignored, dtype=np.uint8)


@pytest.mark.parametrize(
    "scoremap, message",
    [
        (np.full((4, 4), np.nan), "NaN"),
        (np.full((4, 4), np.inf), "NaN, inf"),
        (np.zeros((1, 4, 4)), "2-D"),
        (np.full((4, 4), 1.5), r"\[0, 1\]"),
        (np.full((4, 4), -0.1), r"\[0, 1\]"),
        (np.array([["a"] * 4] * 4), "dtype"),
    ],
)
def test_prepare_saved_map_names_the_map(scoremap, message):
    with pytest.raises(FcamError, match=message) as info:
        prepare_saved_map(scoremap, 4, normalize=False, name="maps/a/b.npy")
    assert "maps/a/b.npy" in str(info.value)
    assert prepare_saved_map(np.zeros((4, 4), np.float32), 4, False, "ok.npy").dtype == np.float64
    assert prepare_saved_map(np.full((4, 4), 7.0), 4, True, "ok.npy").max() == 0.0  # constant: zeros
    assert prepare_saved_map(np.random.default_rng(0).random((3, 5)), 4, False, "ok.npy").shape == (4, 4)


def test_saved_map_scoring_imports_no_torch():
    code = ("import sys; import fcam.engine.saved_maps, fcam.engine.report, fcam.engine.scoring, fcam.metrics; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:3]")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_unknown_method_is_named_with_the_known_ones(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "cls.pt"), "--method", "cam", "nosuchcam",
                 "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown map method 'nosuchcam'" in err[0] and "layercam" in err[0], err
