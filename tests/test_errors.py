"""Bad input is refused before any training: one line naming the bad value and what is allowed,
exit code 2, no traceback, and no run directory left behind. A failed sweep job fails alone.
Every case runs in this process through `cli.main`, as `replay run` would."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import cli, replay, run_cli

from replaycli.outputs.rundir import SUMMARY, read_run

CUDA = torch.cuda.is_available()

# (id, overrides, what the one-line message must say); {tmp} is the case's own directory
BAD = [
    (
        "unknown-option",
        ["buffer=foo"],
        [
            "buffer=foo is not an option of config group buffer",
            "allowed: class_balanced, experience_balanced, gss, none, parametric, reservoir",
        ],
    ),
    ("unknown-model", ["model=transformer"], ["model=transformer", "allowed: cnn, mlp, resnet18"]),
    ("unknown-experiment", ["+experiment=nope"], ["experiment=nope", "digits_replay", "tutorial"]),
    ("unknown-key", ["foo=1"], ["unknown key foo in foo=1", "allowed keys: ", "epochs", "to add a key: +foo=1"]),
    (
        "unknown-nested-key",
        ["buffer.maxsize=3"],
        [
            "unknown key buffer.maxsize in buffer.maxsize=3",
            "did you mean buffer.max_size?",
            "allowed keys of buffer: max_size",
        ],
    ),
    (
        "key-of-another-option",
        ["loader=group_balanced", "loader.task_balanced_dataloader=true"],
        ["unknown key loader.task_balanced_dataloader", "allowed keys of loader: oversample_small_groups"],
    ),
    ("bad-syntax", ["epochs=["], ["cannot parse override 'epochs=['", "allowed: key=value, group=option"]),
    ("sweep-without-m", ["buffer.max_size=1,2"], ["buffer.max_size=1,2", "--multirun"]),
    ("zero-epochs", ["epochs=0"], ["epochs=0 must be a positive integer"]),
    ("text-epochs", ["epochs=abc"], ["epochs='abc' must be a positive integer"]),
    ("negative-batch", ["train_mb_size=-4"], ["train_mb_size=-4 must be an integer in [1, 1048576]"]),
    ("zero-eval-batch", ["eval_mb_size=0"], ["eval_mb_size=0 must be an integer in [1, 1048576]"]),
    ("zero-memory-batch", ["mem_mb_size=0"], ["mem_mb_size=0 must be an integer in [1, 1048576]"]),
    ("negative-buffer", ["buffer.max_size=-5"], ["buffer.max_size=-5 must be an integer >= 0"]),
    ("zero-hidden", ["model.hidden_size=0"], ["model.hidden_size=0 must be a positive integer"]),
    ("negative-lr", ["optimizer.lr=-0.1"], ["optimizer.lr=-0.1 must be a finite number >= 0"]),
    ("infinite-lr", ["optimizer.lr=inf"], ["optimizer.lr=inf must be a finite number >= 0"]),
    ("nan-alpha", ["strategy=der", "strategy.alpha=nan"], ["strategy.alpha=nan must be a finite number >= 0"]),
    ("negative-seed", ["seed=-1"], ["seed=-1 must be an integer in [0, 9223372036854775807]"]),
    ("bad-progress", ["progress=loud"], ["progress='loud' is not allowed; allowed: auto, rich, plain, none"]),
    ("bad-groupby", ["groupby=colour"], ["groupby='colour' is not allowed; allowed: null, class, task, experience"]),
    (
        "groupby-without-groups",
        ["buffer=reservoir", "groupby=class"],
        ["groupby=class needs a buffer with groups; buffer=reservoir has none", "allowed: buffer=parametric"],
    ),
    (
        "n-experiences",
        ["benchmark.n_experiences=3"],
        ["benchmark.n_experiences=3 does not divide the 10 classes; allowed: [1, 2, 5, 10]", "allowed: [1, 2, 5, 10]"],
    ),
    ("class-order", ["benchmark.class_order=[0,1]"], ["class_order=[0, 1] must be a permutation"]),
    ("class-order-float", ["benchmark.class_order=[9.5,8,7,6,5,4,3,2,1,0]"], ["class_order=[9.5, 8, 7"]),
    (  # Hydra's own log line about the import was printed before ours
        "method-not-importable",
        ["strategy._target_=nope.Nope"],
        ["strategy=replay cannot be built: Error loading 'nope.Nope': ModuleNotFoundError"],
    ),
    ("method-not-a-class", ["strategy._target_=os.path.join"], ["names os.path.join, which is not a class"]),
    ("loader-flag", ["loader.shuffle=maybe"], ["loader.shuffle='maybe' is not allowed; allowed: true, false"]),
    ("optimizer-flag", ["optimizer.fused=maybe"], ["optimizer.fused='maybe' is not allowed; allowed: true, false"]),
    ("granularity-scalar", ["granularity=x"], ["granularity='x' is not allowed; allowed: keys of it"]),
    ("no-model", ["~model"], ["model is required (~model removed it); allowed: model=cnn, model=mlp"]),
    ("no-loader", ["~loader"], ["loader is required (~loader removed it); allowed: loader=group_balanced"]),
    ("no-optimizer-target", ["~optimizer._target_"], ["optimizer is required (optimizer._target_ is null)"]),
    ("no-strategy", ["~strategy"], ["strategy is required (~strategy removed it); allowed: strategy=agem"]),
    ("empty-sweep", ["-m", "seed=range(0,0)"], ["seed=range(0,0) sweeps no value; allowed: a sweep of one value"]),
    (
        "unknown-argument",
        ["+model.foo=1"],
        [
            "model.foo=1 is not an argument of replaycli.models.SimpleMLP",
            "allowed: drop_rate, hidden_layers, hidden_size, init, input_size",
        ],
    ),
    (
        "offline-data-missing",
        ["benchmark=split_mnist", "data_root={tmp}/nodata", "download=false"],
        ["mnist data not found under data_root={tmp}/nodata (download is off)", "train-images-idx3-ubyte"],
    ),
    (
        "unwritable-output",
        ["hydra.run.dir={tmp}/blocker/run"],
        [
            "hydra.run.dir={tmp}/blocker/run cannot be created: {tmp}/blocker is not a directory",
            "allowed: a writable directory",
        ],
    ),
    ("sweep-unknown-option", ["-m", "buffer=reservoir,foo"], ["buffer=foo is not an option of config group buffer"]),
    ("sweep-unknown-key", ["-m", "epochs=1", "fooo=1,2"], ["unknown key fooo in fooo=1"]),
    # what an adversarial pass found printing tracebacks or refusing late (issue 14)
    (
        "huge-seed",
        ["seed=99999999999999999999"],
        ["seed=99999999999999999999 must be an integer in [0, 9223372036854775807]"],
    ),
    # what the fuzz drew (2026-12-04): a batch this size was built as positions in memory (a traceback, or memory
    # without end while the memory was cycled to fill it)
    (
        "huge-batch",
        ["train_mb_size=99999999999999999999"],
        ["train_mb_size=99999999999999999999 must be an integer in [1, 1048576]"],
    ),
    (
        "huge-memory-batch",
        ["mem_mb_size=99999999999999999999"],
        ["mem_mb_size=99999999999999999999 must be an integer in [1, 1048576]"],
    ),
    # a list of options for one group: Hydra merges them (buffer=[reservoir,none] ran without a memory) or, for
    # numbers, raised a TypeError
    (
        "group-list",
        ["buffer=[reservoir,none]"],
        [
            "buffer=[reservoir,none] gives config group buffer a list of options; allowed: one option, buffer=OPTION, "
            "or a sweep over options: -m buffer=A,B"
        ],
    ),
    (
        "group-list-of-numbers",
        ["+experiment=[1]"],
        ["+experiment=[1] gives config group experiment a list of options", "allowed: one option, +experiment=OPTION"],
    ),
    ("deleted-seed", ["~seed"], ["seed=None must be an integer in [0, "]),
    (
        "deleted-required-key",
        ["~buffer.max_size"],
        ["buffer=parametric cannot be built: ", "missing 1 required positional argument: 'max_size'"],
    ),
    ("no-key", ["=5"], ["cannot parse override '=5' (no key before '=')"]),
    ("unresolvable", ["seed=${{foo}}"], ["the config cannot be resolved: Interpolation key 'foo' not found"]),
    ("missing-env", ["progress=${{oc.env:REPLAY_NO_SUCH_VARIABLE}}"], ["the config cannot be resolved: "]),
    (
        "not-a-bool",
        ["benchmark.return_task_id=maybe"],
        ["benchmark.return_task_id='maybe' is not allowed; allowed: true, false"],
    ),
    ("unknown-flag", ["-x"], ["unknown flag -x; allowed: --cfg"]),
    (
        "unimportable-target",
        ["strategy._target_=no_such_module.Method"],
        ["strategy=replay cannot be built: Error loading 'no_such_module.Method'"],
    ),
    (
        "too-few-fixed-classes",
        ["buffer=class_balanced", "buffer.adaptive_size=false", "buffer.total_num_classes=3"],
        ["buffer.total_num_classes=3 fixes fewer shares than the 10 class keys; allowed: >= 10"],
    ),
    (
        "too-few-fixed-experiences",
        ["buffer=experience_balanced", "buffer.adaptive_size=false", "buffer.num_experiences=1"],
        ["buffer.num_experiences=1 fixes fewer shares than the 5 experience keys"],
    ),
    ("infinite-decay", ["optimizer.weight_decay=inf"], ["optimizer.weight_decay=inf must be a finite number >= 0"]),
    (
        "nan-momentum",
        ["optimizer=sgd", "optimizer.momentum=nan"],
        ["optimizer.momentum=nan must be a finite number >= 0"],
    ),
    ("long-name", ["hydra.run.dir={tmp}/" + "x" * 300], ["has a name of 300 bytes", "allowed: at most 255"]),
    (
        "group-option-not-a-name",
        ["buffer=-1"],
        ["cannot compose ", "buffer=-1 (Config group override must be a string", "allowed: group=option"],
    ),
    (
        "conflicting-flags",
        ["-m", "--cfg", "job"],
        ["--cfg and --multirun given together; allowed: one of --run, --multirun"],
    ),
]
if not CUDA:
    BAD.append(("cuda-missing", ["device=cuda"], ["device=cuda but CUDA is not available here; allowed: auto, cpu"]))


CONFIGS = Path(__file__).resolve().parents[1] / "configs"
GROUPS = sorted(
    p.name for p in CONFIGS.iterdir() if p.is_dir() and p.name not in ("experiment", "protocol", "hydra")
)  # hydra/: options of Hydra's own groups; experiment/ and protocol/: presets of the global keys, no target


def refused_in(tmp: Path, args: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    """`replay run ARGS` in this process, from `tmp` (where outputs/ would go)."""
    (tmp / "blocker").write_text("a file where a directory should be\n")
    monkeypatch.chdir(tmp)
    flags = [a for a in args if a.startswith("-")]  # Hydra's flags come before the overrides
    rest = [a.format(tmp=tmp) for a in args if not a.startswith("-")]
    return cli("run", *flags, "epochs=1", "progress=none", *rest, capsys=capsys)


def assert_refused(tmp: Path, code: int, out: str, err: str, expected: list[str]) -> None:
    assert code == 2, (code, err[-2000:])
    assert err.startswith("error: ") and err.count("\n") == 1, err[-2000:]
    assert "Traceback" not in err + out
    for text in expected:
        assert text.format(tmp=tmp) in err, err
    left = [d for d in tmp.rglob("*") if d.is_dir() and d.name not in ("nodata",)]
    assert not [d for d in left if (d / ".hydra").exists() or list(d.glob("*.csv"))], left
    assert not (tmp / "outputs" / "runs").exists() or not any((tmp / "outputs" / "runs").iterdir())
    assert not (tmp / "outputs" / "sweeps").exists()


@pytest.mark.parametrize("name, args, expected", BAD, ids=[c[0] for c in BAD])
def test_bad_input_is_one_line_exit_2_and_leaves_no_run_dir(name, args, expected, tmp_path, capsys, monkeypatch):
    assert_refused(tmp_path, *refused_in(tmp_path, args, capsys, monkeypatch), expected)


@pytest.mark.parametrize("group", GROUPS)
def test_an_unknown_key_in_any_group_is_one_line(group, tmp_path, capsys, monkeypatch):
    """`+GROUP.foo=1`, for every group the package ships (read from configs/), names the key."""
    args = [f"+{group}.foo=1"] + (["buffer=reservoir"] if group == "buffer" else [])
    assert_refused(
        tmp_path, *refused_in(tmp_path, args, capsys, monkeypatch), [f"{group}.foo=1 is not an argument of "]
    )


def test_hydra_flags_still_work(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("run", "--cfg", "job", "buffer.max_size=7", capsys=capsys)
    assert code == 0 and "max_size: 7" in out, err
    code, out, err = cli("run", "--cfg", "job", "fooo=1", capsys=capsys)
    assert code == 2 and err.startswith("error: unknown key fooo") and err.count("\n") == 1
    p = replay("run", "--help", cwd=tmp_path)  # the subprocess smoke test of `replay run`
    assert p.returncode == 0 and "buffer: class_balanced, experience_balanced" in p.stdout
    assert not (tmp_path / "outputs").exists()


def test_a_failed_sweep_job_does_not_take_the_others_down(tmp_path):
    sweep = tmp_path / "sweep"
    p = run_cli(
        "run",
        "-m",
        "epochs=1",
        "progress=none",
        "buffer.max_size=-1,5",
        "benchmark.n_experiences=2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert p.returncode == 2, p.stderr[-2000:]
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "buffer.max_size=-1 must be an integer >= 0" in last, p.stderr
    assert "Traceback" not in p.stderr
    good = read_run(sweep / "1")  # the job after the failed one ran to its end
    assert good.complete and len(good.accuracy) == 2 and sum(good.histograms[-1]) == 5
    assert not (sweep / "0" / SUMMARY).exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--resolve"], "--resolve shows a resolved config; allowed: with --cfg job|hydra|all, or --help"),
        (["-sc"], "--shell-completion needs what to do; allowed: install=bash"),
        (["--config-dir", "/nonexistent-folder"], "--config-dir /nonexistent-folder is not a directory"),
    ],
)
def test_hydra_flag_misuse_is_one_line(args, message, tmp_path, capsys, monkeypatch):
    """Each was a traceback of Hydra's (a bare ValueError) or several lines of its own."""
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("run", *args, "epochs=1", capsys=capsys)
    assert code == 2 and err.startswith(f"error: {message}") and err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())


def test_a_typo_is_refused_before_torch_is_imported(tmp_path):
    """The run's keys and the types of the options' keys are checked before torch is imported."""
    import subprocess
    import sys

    probe = (
        "import sys; from replaycli.cli import main; code = main(sys.argv[1:]); "
        "print('TORCH', 'torch' in sys.modules, code)"
    )
    for arg, words in (
        ("buffer.max_size=100.5", "buffer.max_size=100.5 is not allowed; allowed: an integer (buffer=parametric has"),
        ("loader.shuffle=maybe", "loader.shuffle='maybe' is not allowed; allowed: true, false"),
        ("optimizer.lr=fast", "optimizer.lr='fast' is not allowed; allowed: a number"),
        ("epochs=0", "epochs=0 must be a positive integer"),
    ):
        proc = subprocess.run(
            [sys.executable, "-c", probe, "run", arg, f"hydra.run.dir={tmp_path / 'r'}"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert proc.stdout.strip() == "TORCH False 2", proc.stderr
        assert proc.stderr.startswith(f"error: {words}") and len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / "r").exists()
    both = subprocess.run(  # an int where the default is a float is a number: lr=1 passes, the next is refused
        [
            sys.executable,
            "-c",
            probe,
            "run",
            "optimizer.lr=1",
            "buffer.max_size=1.5",
            f"hydra.run.dir={tmp_path / 'r'}",
        ],
        capture_output=True,
        text=True,
    )
    assert "TORCH False 2" in both.stdout and both.stderr.startswith("error: buffer.max_size=1.5 is not allowed")


def test_the_first_line_comes_before_the_imports_on_a_terminal(tmp_path):
    import os
    import pty
    import subprocess

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        ["replay", "run", "epochs=1", "benchmark.n_experiences=2", "progress=none", f"hydra.run.dir={tmp_path / 'r'}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
        cwd=tmp_path,
    )
    os.close(follower)
    first = b""
    while b"\n" not in first:
        first += os.read(leader, 1024)
    out, _ = proc.communicate()
    os.close(leader)
    assert first.startswith(b"replay run: loading PyTorch and the data ...")
    assert proc.returncode == 0 and b"loading" not in out  # stdout (a pipe here) has only the run's own lines
    piped = run_cli("run", "epochs=1", "benchmark.n_experiences=2", "progress=none", f"hydra.run.dir={tmp_path / 'p'}")
    assert "loading PyTorch" not in piped.stderr  # not a terminal: no status line


def test_device_cuda_n_is_checked_up_front_and_against_the_machine(tmp_path):
    import subprocess
    import sys

    probe = (
        "import sys; from replaycli.cli import main; code = main(sys.argv[1:]); print('TORCH', 'torch' in sys.modules)"
    )
    for bad in ("cuda:x", "cuda:-1", "cuda:01", "gpu"):
        proc = subprocess.run(
            [sys.executable, "-c", probe, "run", f"device={bad}", f"hydra.run.dir={tmp_path / 'r'}"],
            capture_output=True,
            text=True,
        )
        assert "TORCH False" in proc.stdout
        assert (
            proc.stderr.strip()
            == f"error: device='{bad}' is not allowed; allowed: auto, cpu, cuda, cuda:N (N = 0, 1, ...)"
        )
    if not torch.cuda.is_available():
        proc = run_cli("run", "device=cuda:1", f"hydra.run.dir={tmp_path / 'r'}")
        assert proc.returncode == 2 and proc.stderr.strip() == (
            "error: device=cuda:1 but CUDA is not available here; allowed: auto, cpu"
        )
    else:  # a device index past the machine's
        n = torch.cuda.device_count()
        proc = run_cli("run", f"device=cuda:{n}", f"hydra.run.dir={tmp_path / 'r'}")
        assert proc.returncode == 2 and f"this machine has {n} CUDA device" in proc.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("arg", "words"),
    [
        ("+epoch=3", "error: epoch=3 is not a key of replay run (did you mean epochs?); allowed: the run's keys"),
        ("+protocol.foo=1", "error: protocol={'foo': 1} is not a key of replay run; allowed:"),
        ("+experiment.budget=5", "error: experiment={'budget': 5} is not a key of replay run; allowed:"),
    ],
)
def test_a_top_level_key_replay_run_does_not_have_is_refused_not_kept(arg, words, tmp_path, capsys, monkeypatch):
    """`+KEY=...` adds a key Hydra keeps and the run would never read: a typo of `epochs` trained
    with the default silently. Now one line naming the closest key."""
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("run", arg, "epochs=1", capsys=capsys)
    assert code == 2 and err.startswith(words) and err.count("\n") == 1, err
    assert not (tmp_path / "outputs").exists()
