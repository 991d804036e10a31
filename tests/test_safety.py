"""Nothing lost, nothing run that the user did not ask for: a run directory is data (resume builds
only replaycli's own targets), a checkpoint belongs to its config, an existing run is never
overwritten silently, and a run whose loss turns non-finite stops as failed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import cli, compose_cfg, run_cli, stopping_at
from omegaconf import OmegaConf

from replaycli.errors import ConfigError
from replaycli.outputs.rundir import CHECKPOINT, CONFIG, read_run
from replaycli.run import rules

SHORT = ["epochs=1", "progress=none", "benchmark.n_experiences=2", "model.hidden_size=32", "device=cpu"]


def stopped_run(root: Path, *overrides: str) -> Path:
    """A run stopped after its first experience (Ctrl-C at the start of the second)."""
    from replaycli.run.runner import execute

    with stopping_at(1), pytest.raises(KeyboardInterrupt):
        execute(compose_cfg([*SHORT, *overrides]), root)
    assert read_run(root).resumable
    return root


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("where", ["strategy._target_", "buffer.max_size"])
def test_resume_refuses_a_config_that_names_code_replaycli_does_not_ship(tmp_path, capsys, where):
    run = stopped_run(tmp_path / "run")
    victim = tmp_path / "written-by-the-config"
    cfg = OmegaConf.load(run / CONFIG)
    payload = {"_target_": "shutil.copyfile", "src": str(run / CONFIG), "dst": str(victim)}
    if where == "strategy._target_":
        cfg.strategy = {**payload, "_partial_": True}
    else:  # hidden at depth: instantiate would build it while building the buffer
        cfg.buffer.max_size = payload
    (run / CONFIG).write_text(OmegaConf.to_yaml(cfg))
    before = files(run)
    code, _, err = cli("resume", str(run), capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "names " in err and "=shutil.copyfile, which replaycli does not ship; refused" in err
    assert f"replay resume {run} --trust shutil.copyfile" in err
    assert not victim.exists() and files(run) == before  # nothing built, nothing written


def test_trusted_targets_are_the_shipped_ones_and_those_named():
    cfg = compose_cfg(["strategy=der"])
    rules.check_targets(cfg, set(), "config", "--trust")  # every shipped option passes
    assert {
        "replaycli.methods.der.DER",
        "torch.optim.Adam",
        "replaycli.buffers.ParametricBuffer",
    } <= rules.shipped_targets()
    cfg.strategy._target_ = "my_methods.Mine"
    with pytest.raises(ConfigError, match=r"names strategy._target_=my_methods.Mine, which replaycli does not ship"):
        rules.check_targets(cfg, set(), "config", "--trust")
    rules.check_targets(cfg, {"my_methods.Mine"}, "config", "--trust")  # named by the user: allowed


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path, capsys):
    a, b = stopped_run(tmp_path / "a"), stopped_run(tmp_path / "b", "seed=1", "buffer.max_size=50")
    shutil.copy(a / CHECKPOINT, b / CHECKPOINT)  # another run's checkpoint
    before = files(b)
    code, _, err = cli("resume", str(b), capsys=capsys)
    assert code == 2 and f"{b / CHECKPOINT} was not saved with this {CONFIG}" in err and err.count("\n") == 1
    assert files(b) == before
    (a / CONFIG).write_text((a / CONFIG).read_text().replace("max_size: 200", "max_size: 20"))  # edited
    code, _, err = cli("resume", str(a), capsys=capsys)
    assert code == 2 and "was not saved with this config.yaml (it was edited" in err


def test_an_existing_run_directory_is_refused_unless_overwrite(tmp_path):
    run = tmp_path / "A"
    assert run_cli("run", *SHORT, f"hydra.run.dir={run}", cwd=tmp_path).returncode == 0
    before = files(run)
    p = run_cli("run", *SHORT, "seed=1", "buffer.max_size=50", f"hydra.run.dir={run}", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr == (
        f"error: {run} holds a run already; nothing was written; allowed: another directory, "
        f"replay resume {run} (a run), or --overwrite to replace it\n"
    )
    assert files(run) == before  # byte for byte
    p = run_cli("run", *SHORT, "seed=1", "buffer.max_size=50", f"hydra.run.dir={run}", "--overwrite", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    rec = read_run(run)
    assert rec.complete and "seed: 1" in rec.config_text and rec.summary["seed"] == 1
    assert (run / "run.log").read_text().count("outputs: ") == 1  # the new run's log only, not both


def test_an_existing_sweep_directory_that_says_not_how_it_was_started_is_refused(tmp_path):
    sweep = tmp_path / "S"  # a sweep goes on only where its multirun.yaml shows the same overrides (test_reissue.py)
    sweep.mkdir()
    (sweep / "summary.csv").write_text("job,status\n0,complete\n")
    p = run_cli("run", "-m", *SHORT, "seed=0,1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.startswith(
        f"error: {sweep} holds another sweep (no multirun.yaml records how it was started); nothing was written"
    )
    assert [f.name for f in sweep.iterdir()] == ["summary.csv"]


def test_a_loss_that_turns_non_finite_stops_the_run_as_failed(tmp_path):
    run = tmp_path / "run"
    p = run_cli(
        "run",
        *SHORT,
        "optimizer=sgd",
        "optimizer.lr=1e30",
        "optimizer.momentum=0",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert p.stderr.startswith("error: the training loss became nan at experience 0, epoch 0, step ")
    rec = read_run(run)
    assert rec.status == "failed" and "the training loss became nan" in rec.summary["error"]
    assert rec.accuracy == [] and not (run / "metrics.jsonl").exists()  # no NaN written as a result


def test_a_full_disk_stops_the_run_in_one_line_and_the_summary_matches_the_checkpoint(tmp_path, capsys, monkeypatch):
    import errno

    import torch

    from replaycli.run import checkpoint

    real, calls = checkpoint.save, []

    def full_at_the_second(run_dir, ckpt, keep="last"):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(run_dir, ckpt, keep)

    monkeypatch.setattr(checkpoint, "save", full_at_the_second)
    run = tmp_path / "run"
    code, _, err = cli("run", *SHORT, f"hydra.run.dir={run}", capsys=capsys)
    assert code == 2 and err == (
        f"error: cannot write into {run} (No space left on device); the run stopped after "
        f"experience 1; once there is room: replay resume {run}\n"
    )
    rec = read_run(run)
    ckpt = torch.load(run / CHECKPOINT, weights_only=True)
    assert rec.status == "failed" and rec.summary["experiences_done"] == ckpt["experiences_done"] == 1
    monkeypatch.setattr(checkpoint, "save", real)
    code, _, err = cli("resume", str(run), capsys=capsys)  # room again: it goes on
    assert code == 0, err
    assert read_run(run).complete


def test_a_run_directory_in_use_is_neither_resumed_nor_overwritten(tmp_path, capsys):
    import fcntl
    import os

    run = tmp_path / "run"
    with stopping_at(1):  # through replay run: Hydra's record is there, as in any run of the command line
        assert cli("run", *SHORT, f"hydra.run.dir={run}", capsys=capsys)[0] == 130
    before = files(run)
    fd = os.open(run, os.O_RDONLY)  # a run or a resume training there holds this lock (another open file)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        code, _, err = cli("resume", str(run), capsys=capsys)
        assert code == 2 and err == (
            f"error: {run} is in use: a replay process is training in it now; refused: wait for it to end, "
            "or use another directory\n"
        )
        p = run_cli("run", *SHORT, f"hydra.run.dir={run}", "--overwrite", cwd=tmp_path)  # nor replaced under it
        assert p.returncode == 2 and "is in use: a replay process is training in it now" in p.stderr, p.stderr
    finally:
        os.close(fd)  # the kernel releases the lock with it (as when the process dies)
    assert not read_run(run).complete and files(run) == before
    assert cli("resume", str(run), capsys=capsys)[0] == 0 and read_run(run).complete


def test_resume_deletes_only_its_own_temporary_files(tmp_path, capsys):
    run = stopped_run(tmp_path / "run")
    ours, theirs = run / ".accuracy.csv.1a2b3c4d.tmp", run / ".mynotes.tmp"
    ours.write_text("half a table")
    theirs.write_text("my notes")
    assert cli("resume", str(run), capsys=capsys)[0] == 0
    assert not ours.exists() and theirs.read_text() == "my notes"


def test_run_log_is_never_appended_through_a_link(tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("not the run's\n")
    run = stopped_run(tmp_path / "run")
    (run / "run.log").unlink()
    (run / "run.log").symlink_to(elsewhere)
    code, _, err = cli("resume", str(run), capsys=capsys)
    assert code == 2 and f"{run / 'run.log'} is a link, where a run keeps a file of its own" in err
    assert elsewhere.read_text() == "not the run's\n"


def test_an_empty_sweep_is_refused(tmp_path):
    p = run_cli("run", "-m", *SHORT, "seed=glob(nothing*)", f"hydra.sweep.dir={tmp_path / 'S'}", cwd=tmp_path)
    assert p.returncode == 2 and "error: the sweep launched no job" in p.stderr


def test_shell_completion_completes_verbs_groups_and_keys_in_bash(tmp_path):
    """`eval "$(replay -sc install=bash)"`, then what TAB asks: the installed script end to end."""
    import shutil as sh
    import subprocess

    from conftest import replay_command

    if sh.which("bash") is None:
        pytest.skip("no bash")
    script = " ".join(replay_command())
    probe = "; ".join(
        [
            f'eval "$({script} -sc install=bash)"',
            *[
                f'COMP_LINE="{script} {line}"; COMP_POINT=${{#COMP_LINE}}; COMP_CWORD={cword}; hydra_bash_completion; '
                f'echo "${{COMPREPLY[*]}}"'
                for line, cword in (("ins", 1), ("run buffer=", 2), ("run model.hid", 2))
            ],
        ]
    )
    p = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    lines = p.stdout.splitlines()
    assert p.returncode == 0 and len(lines) == 3, p.stdout + p.stderr
    assert lines[0] == "inspect"
    shipped = sorted(f.stem for f in (Path(__file__).parents[1] / "configs" / "buffer").glob("*.yaml"))
    assert "reservoir" in shipped and "gss" in shipped
    assert lines[1].split() == [f"buffer={o}" for o in shipped]  # every option the package ships, sorted
    assert lines[2].split() == ["model.hidden_layers=", "model.hidden_size="]


def test_version_and_resume_help(capsys):
    from replaycli import __version__

    assert cli("--version", capsys=capsys) == (0, f"replay {__version__}\n", "")
    code, out, _ = cli("resume", "--help", capsys=capsys)
    assert code == 0 and out.startswith("usage: replay resume RUN_DIR [--trust TARGET ...]")


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "was not saved with this config.yaml"),  # empty: not the config the checkpoint holds
        ("- a\n- b\n", "config.yaml is not a config mapping"),
        ("seed: [unclosed\n", "config.yaml is not a readable config"),
    ],
)
def test_resume_of_an_empty_or_foreign_config_is_one_line(tmp_path, capsys, content, message):
    run = stopped_run(tmp_path / "run")
    (run / CONFIG).write_text(content)
    code, _, err = cli("resume", str(run), capsys=capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_an_interrupted_sweep_writes_its_summary_with_the_jobs_not_started(tmp_path, monkeypatch):
    import replaycli.run.loop as loop

    real, calls = loop.run_experience, []

    def stop(run, exp, on_step):  # Ctrl-C in the third job's first experience
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(run, exp, on_step)

    monkeypatch.setattr(loop, "run_experience", stop)
    sweep = tmp_path / "S"
    p = run_cli("run", "-m", *SHORT, "seed=0,1", "buffer.max_size=10,20", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert p.returncode == 130
    assert p.stderr.strip().endswith(  # the same sweep again: it goes on (test_reissue.py)
        "error: interrupted; the sweep goes on where it stopped with: replay run -m epochs=1 progress=none "
        "benchmark.n_experiences=2 model.hidden_size=32 device=cpu seed=0,1 buffer.max_size=10,20 "
        f"hydra.sweep.dir={sweep}"
    )
    rows = (sweep / "summary.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2", "3"]
    assert [r.split(",")[rows[0].split(",").index("status")] for r in rows[1:]] == [
        "complete",
        "complete",
        "interrupted",
        "not started",
    ]
    shown = run_cli("inspect", str(sweep), cwd=tmp_path)
    assert "4 jobs, 2 complete, 1 interrupted, 1 not started" in shown.stdout
    monkeypatch.setattr(loop, "run_experience", real)
    again = run_cli("run", "-m", *SHORT, "seed=0,1", "buffer.max_size=10,20", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert again.returncode == 0 and "the sweep goes on: 2 of 4 jobs complete already" in again.stdout
    assert [
        r.split(",")[rows[0].split(",").index("status")] for r in (sweep / "summary.csv").read_text().splitlines()[1:]
    ] == ["complete"] * 4


def test_sigterm_is_recorded_as_interrupted(tmp_path, monkeypatch):
    """A SIGTERM delivered to the process at the start of experience 1 (a scheduler stopping the
    job) stops the run as Ctrl-C does: status interrupted, exit 130, the resume hint."""
    import os
    import signal

    import replaycli.run.loop as loop

    real = loop.run_experience

    def terminated(run, exp, on_step):
        if exp.current_experience == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # handled between bytecodes: the next line never runs
        return real(run, exp, on_step)

    monkeypatch.setattr(loop, "run_experience", terminated)
    before = signal.getsignal(signal.SIGTERM)
    run = tmp_path / "run"
    try:
        p = run_cli("run", *SHORT, f"hydra.run.dir={run}", cwd=tmp_path)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert p.returncode == 130 and p.stderr.strip().endswith(f"replay resume {run}")
    rec = read_run(run)
    assert rec.status == "interrupted" and len(rec.accuracy) == 1 and rec.resumable


def test_plot_of_an_outputs_directory_plots_each_run_and_sweep(tmp_path):
    for name in ("a", "b"):
        assert (
            run_cli("run", *SHORT, f"hydra.run.dir={tmp_path / 'outputs' / 'runs' / name}", cwd=tmp_path).returncode
            == 0
        )
    p = run_cli("plot", "outputs", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    written = [tmp_path / f for f in p.stdout.split()]
    assert {f.parent.name for f in written} == {"a", "b"} and all(f.is_file() for f in written)


MALFORMED = {  # file, content, what the one line says
    "non-UTF-8 csv": ("accuracy.csv", b"trained,test_0\xff\n", "accuracy.csv is not UTF-8 text"),
    "summary a list": ("summary.json", b"[1, 2]", "summary.json holds a JSON list, not an object"),
    "summary a string": ("summary.json", b'"complete"', "summary.json holds a JSON str, not an object"),
    "metrics line not an object": ("metrics.jsonl", b"[1]\n", "metrics.jsonl line 1 is not a JSON object"),
    "config a list": ("config.yaml", b"- a\n- b\n", "config.yaml holds a YAML list, not a mapping"),
    "ragged csv": ("accuracy.csv", b"trained,test_0,test_1,average\n0,0.5\n", "accuracy.csv line 2 has 2 cells"),
    "1,000,001 columns": (
        "buffer_histogram.csv",
        ("trained," + ",".join(["c"] * 1_000_001) + "\n").encode(),
        "buffer_histogram.csv has 1000002 columns; allowed: at most 1000001",
    ),
}


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> Path:
    return stopped_run(tmp_path_factory.mktemp("stopped") / "run")


@pytest.mark.parametrize("verb", ["inspect", "compare", "plot"])
@pytest.mark.parametrize("case", list(MALFORMED) + ["unreadable", "read-only plot dir"])
def test_readers_refuse_malformed_outputs_in_one_line(tmp_path, monkeypatch, stopped, verb, case):
    import time

    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    (run / "summary.json").write_text(
        '{"status": "complete", "final_accuracy": 0.5, "forgetting": 0, "bwt": 0, "seconds": 1, "seed": 0}'
    )
    if case == "unreadable":  # as chmod 0 would make it for a user (root reads anything: simulated)
        real = Path.read_bytes
        monkeypatch.setattr(
            Path,
            "read_bytes",
            lambda self: (
                (_ for _ in ()).throw(PermissionError(13, "Permission denied"))
                if self.name == "metrics.jsonl"
                else real(self)
            ),
        )
        expected = "metrics.jsonl cannot be read (Permission denied)" if verb != "compare" else ""
    elif case == "read-only plot dir":
        if verb != "plot":
            pytest.skip("only plot writes")
        from replaycli.outputs import files

        monkeypatch.setattr(
            files, "write_atomic", lambda path, data: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))
        )
        expected = "(Permission denied); allowed: a writable run or sweep directory"
    else:
        name, content, expected = MALFORMED[case]
        (run / name).write_bytes(content)
        if verb == "compare" and name in ("accuracy.csv", "buffer_histogram.csv", "metrics.jsonl"):
            expected = ""  # compare reads summary.json and config.yaml only: it may well succeed
        if verb != "compare" and name == "config.yaml":
            expected = ""  # inspect and plot show the run's numbers, not its config: they may well succeed
    start = time.process_time()
    p = run_cli(verb, str(run), cwd=tmp_path)
    assert time.process_time() - start < 5  # bounded work on absurd input
    assert "Traceback" not in p.stderr
    if expected or p.returncode:
        assert p.returncode == 2 and p.stderr.startswith("error: ") and p.stderr.count("\n") == 1, p.stderr
        assert expected in p.stderr, p.stderr


def test_submitit_slurm_without_slurm_is_one_line_and_leaves_no_sweep(tmp_path):
    import shutil as sh

    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    if sh.which("srun"):
        pytest.skip("this machine has Slurm")
    p = run_cli("run", "-m", *SHORT, "seed=0,1", "hydra/launcher=submitit_slurm", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert p.stderr.startswith("error: hydra/launcher=submitit_slurm could not launch the sweep (RuntimeError: ")
    assert "allowed here: hydra/launcher=basic, joblib or submitit_local" in p.stderr
    assert not (tmp_path / "outputs").exists()


def test_hydras_own_files_are_written_atomically(tmp_path, monkeypatch):
    """The `.hydra/` files go through write_atomic (a temporary file, then a rename), so a kill in
    the middle of writing one leaves the whole old file or the whole new one."""
    import hydra.core.utils

    from replaycli.outputs import files

    written = []
    real = files.write_atomic
    monkeypatch.setattr(files, "write_atomic", lambda path, text: (written.append(Path(path).name), real(path, text)))
    run = tmp_path / "run"
    assert run_cli("run", *SHORT, f"hydra.run.dir={run}", cwd=tmp_path).returncode == 0
    assert {"config.yaml", "hydra.yaml", "overrides.yaml"} <= set(written)
    assert OmegaConf.load(run / ".hydra" / "overrides.yaml") == [a for a in SHORT]
    assert not list((run / ".hydra").glob(".*.tmp"))
    assert hydra.core.utils._save_config.__name__ == "_save_config_atomically"


def test_overwrite_never_removes_a_directory_that_is_not_a_run(tmp_path):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("precious\n")
    for extra in ([], ["--overwrite"]):
        p = run_cli("run", *SHORT, f"hydra.run.dir={mine}", *extra, cwd=tmp_path)
        assert (
            p.returncode == 2
            and "holds chapter1.tex, which is not a replaycli run or sweep; nothing was written" in p.stderr
        )
    assert [f.name for f in mine.iterdir()] == ["chapter1.tex"] and (mine / "chapter1.tex").read_text() == "precious\n"


def test_overwrite_never_removes_a_folder_of_runs(tmp_path):
    runs = tmp_path / "outputs" / "runs"
    assert run_cli("run", *SHORT, f"hydra.run.dir={runs / 'a'}", cwd=tmp_path).returncode == 0
    before = files(runs)
    for flag in ([], ["-m"]):
        p = run_cli("run", *flag, *SHORT, f"hydra.{'sweep' if flag else 'run'}.dir={runs}", "--overwrite", cwd=tmp_path)
        assert p.returncode == 2 and "holds a, which is not a replaycli run or sweep" in p.stderr
    assert files(runs) == before


def test_a_file_of_the_working_directory_never_shadows_an_installed_package(tmp_path):
    """A received folder holding `sklearn.py` (the embedded digits import scikit-learn) runs
    nothing of it: the working directory is searched only for a target of the user's own, and
    after every installed package (as a process of its own: sklearn is imported in this one)."""
    from conftest import replay

    (tmp_path / "sklearn.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('ran')\nraise SystemExit(0)\n")
    p = replay("run", *SHORT, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert not (tmp_path / "ran").exists() and read_run(tmp_path / "run").complete


def test_the_working_directory_is_searched_last_and_only_for_a_users_target(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in (str(tmp_path), "")])
    code, _, err = cli("run", *SHORT, f"hydra.run.dir={tmp_path / 'plain'}", capsys=capsys)
    assert code == 0 and str(tmp_path) not in sys.path, err  # shipped targets only: not searched at all
    module = f"user_data_{tmp_path.name}"
    (tmp_path / f"{module}.py").write_text(
        "import torch\nfrom replaycli.generators import nc_benchmark\n\n"
        "def make():\n    x, y = torch.randn(40, 6), torch.arange(40) % 4\n"
        "    return nc_benchmark((x, y), (x, y), 2, shuffle=False)\n"
    )
    code, _, err = cli(
        "run",
        "benchmark=custom",
        f"benchmark._target_={module}.make",
        "epochs=1",
        "progress=none",
        f"hydra.run.dir={tmp_path / 'mine'}",
        capsys=capsys,
    )
    assert code == 0, err
    assert sys.path[-1] == str(tmp_path) and sys.path.index(str(tmp_path)) == len(sys.path) - 1  # last


def test_hydras_flag_that_unpickles_a_file_is_refused(tmp_path):
    (tmp_path / "config.pickle").write_bytes(b"not read")
    p = run_cli("run", "--experimental-rerun", str(tmp_path / "config.pickle"), cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.startswith("error: --experimental-rerun is refused: it unpickles FILE")


def test_overwrite_loses_nothing_when_the_new_run_is_refused(tmp_path):
    """`--overwrite` sets the old run aside until the new one has written: a value refused when
    the run is built (after the command line was read) leaves the old run as it was, byte for byte."""
    run = tmp_path / "A"
    assert run_cli("run", *SHORT, f"hydra.run.dir={run}", cwd=tmp_path).returncode == 0
    before = files(run)
    for bad in ("seed=abc", "buffer.max_size=-5", "loader.shuffle=maybe"):
        p = run_cli("run", *SHORT, bad, f"hydra.run.dir={run}", "--overwrite", cwd=tmp_path)
        assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
        assert files(run) == before, bad
    assert [p.name for p in tmp_path.iterdir()] == ["A"]  # no set-aside copy left behind
    p = run_cli("run", *SHORT, "seed=4", f"hydra.run.dir={run}", "--overwrite", cwd=tmp_path)
    assert p.returncode == 0 and read_run(run).summary["seed"] == 4, p.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["A"]


def test_overwrite_never_removes_a_run_folder_that_holds_someone_elses_file(tmp_path):
    run = tmp_path / "A"
    assert run_cli("run", *SHORT, f"hydra.run.dir={run}", cwd=tmp_path).returncode == 0
    (run / "thesis.tex").write_text("precious\n")
    before = files(run)
    p = run_cli("run", *SHORT, f"hydra.run.dir={run}", "--overwrite", cwd=tmp_path)
    assert p.returncode == 2 and "holds thesis.tex, which is not a replaycli run or sweep" in p.stderr
    assert files(run) == before
    lone = tmp_path / "B"  # a config.yaml alone is no run
    lone.mkdir()
    (lone / "config.yaml").write_text("mine: 1\n")
    p = run_cli("run", *SHORT, f"hydra.run.dir={lone}", "--overwrite", cwd=tmp_path)
    assert p.returncode == 2 and (lone / "config.yaml").read_text() == "mine: 1\n"


@pytest.mark.parametrize("name", ["summary.json", "metrics.jsonl", "accuracy.csv", ".accuracy.csv.1a2b3c4d.tmp"])
def test_a_directory_in_place_of_a_runs_file_is_one_line_on_resume(tmp_path, capsys, name):
    run = stopped_run(tmp_path / "run")
    (run / name).unlink(missing_ok=True)
    (run / name).mkdir()
    before = files(run)
    code, _, err = cli("resume", str(run), capsys=capsys)
    assert code == 2 and err == (
        f"error: {run / name} is a directory, where a run keeps a file of its own; refused: move it away first\n"
    )
    assert files(run) == before and (run / name).is_dir()


def test_a_run_stopped_before_it_began_is_started_again_not_sent_in_a_circle(tmp_path, capsys):
    """Killed in its start-up, a run leaves Hydra's record alone: resume says there is nothing to
    resume and how to start again, and run starts again there (it called it "a run already")."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("- epochs=1\n")
    code, _, err = cli("resume", str(run), capsys=capsys)
    assert code == 2 and "holds only Hydra's record of a run stopped before it began" in err
    assert f"start it again with replay run ... hydra.run.dir={run}" in err
    code, _, err = cli("run", *SHORT, f"hydra.run.dir={run}", capsys=capsys)
    assert code == 0 and read_run(run).complete, err


def test_a_factory_that_exits_is_refused_not_a_silent_success(tmp_path, capsys, monkeypatch):
    module = f"user_exit_{tmp_path.name}"
    (tmp_path / f"{module}.py").write_text("import sys\n\ndef make():\n    sys.exit(0)\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(
        "run",
        "benchmark=custom",
        f"benchmark._target_={module}.make",
        f"hydra.run.dir={tmp_path / 'run'}",
        capsys=capsys,
    )
    assert code == 2 and "cannot be built: it called sys.exit(0)" in err and not (tmp_path / "run").exists()


def test_a_fifo_as_the_data_file_is_refused_not_waited_on(tmp_path, capsys):
    import os

    os.mkfifo(tmp_path / "data.npz")  # np.load would block on it for ever
    code, _, err = cli(
        "run",
        "benchmark=arrays",
        f"benchmark.path={tmp_path / 'data.npz'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        capsys=capsys,
    )
    assert code == 2 and "is not a regular file; allowed: an .npz file" in err


@pytest.mark.parametrize("subdir", ["../escaped", "/tmp/elsewhere"])
def test_the_logger_writes_inside_its_run_only(subdir):
    pytest.importorskip("tensorboard")
    from replaycli.run.loggers import TensorBoardLogger

    with pytest.raises(ConfigError, match="leaves the run directory; allowed: a folder inside it"):
        TensorBoardLogger(Path("run"), subdir)


def test_plot_of_an_outputs_tree_never_writes_through_a_link(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    assert run_cli("run", *SHORT, f"hydra.run.dir={elsewhere}", cwd=tmp_path).returncode == 0
    tree = tmp_path / "outputs" / "runs"
    assert run_cli("run", *SHORT, f"hydra.run.dir={tree / 'mine'}", cwd=tmp_path).returncode == 0
    (tree / "linked").symlink_to(elsewhere, target_is_directory=True)
    before = files(elsewhere)
    p = run_cli("plot", str(tmp_path / "outputs"), cwd=tmp_path)
    assert p.returncode == 0 and str(tree / "mine") in p.stdout, p.stderr
    assert files(elsewhere) == before  # no figure written outside the tree


def test_a_huge_config_is_refused_before_it_is_parsed(tmp_path, capsys):
    run = stopped_run(tmp_path / "run")
    with open(run / CONFIG, "a") as f:  # some 5 MB of a comment: what a YAML parser would spend minutes on
        f.write(("# " + "x" * 998 + "\n") * 5000)
    code, _, err = cli("resume", str(run), capsys=capsys)
    assert code == 2 and err.startswith(f"error: {run / CONFIG} is 5.0 MB; allowed: at most 4 MB"), err


def test_a_run_of_more_than_ten_thousand_classes_reads_back(tmp_path):
    from made_outputs import write_run

    n = 10_001  # the readers stopped at 10,000 columns: iNaturalist-sized runs could not be inspected or resumed
    run = write_run(tmp_path / "run", [[0.5]], [[1] * n])
    assert len(read_run(run).histograms[0]) == n


def doctor(ckpt: dict, field: str) -> None:
    """One field of a checkpoint changed as a received file might have it."""
    store = ckpt["state"]["buffer"]["store"]["attrs"]
    if field == "id-out-of-range":
        store["ids"]["value"][0] = 10**6
    elif field == "id-negative":
        store["ids"]["value"][0] = -3
    elif field == "ids-float":
        store["ids"]["value"] = store["ids"]["value"].double()
    elif field == "huge-max-size":
        ckpt["state"]["buffer"]["max_size"] = 10**9
    elif field == "done-string":
        ckpt["experiences_done"] = "1"
    elif field == "count-string":
        ckpt["writer"]["histograms"][0][0] = "3"
    elif field == "short-histogram":
        ckpt["writer"]["histograms"][0] = ckpt["writer"]["histograms"][0][:-1]
    elif field == "accuracy-above-one":
        ckpt["writer"]["accuracy"][0][0] = 7.0
    elif field == "tensor-in-record":
        import torch

        ckpt["writer"]["records"][0]["loss"] = torch.tensor(1.0)
    elif field == "rows-apart":
        store["scores"]["value"] = store["scores"]["value"][:-1]


@pytest.mark.parametrize(
    "field",
    [
        "id-out-of-range",
        "id-negative",
        "ids-float",
        "huge-max-size",
        "done-string",
        "count-string",
        "short-histogram",
        "accuracy-above-one",
        "tensor-in-record",
        "rows-apart",
    ],
)
def test_a_doctored_checkpoint_is_refused_in_one_line(tmp_path, capsys, field):
    """Each of these gave a traceback, or a resumed run whose tables contradict its config."""
    import torch

    run = stopped_run(tmp_path / "run")
    ckpt = torch.load(run / CHECKPOINT, weights_only=True)
    doctor(ckpt, field)
    torch.save(ckpt, run / CHECKPOINT)
    before = files(run)
    code, _, err = cli("resume", str(run), capsys=capsys)
    assert code == 2 and err.startswith(f"error: checkpoint {run / CHECKPOINT} does not match") and err.count("\n") == 1
    assert files(run) == before


def test_hydras_run_flag_and_a_sweep_subdir_go_through_the_same_guard(tmp_path):
    """`replay run -r` trained into a directory holding a run (it was not checked), and a sweep's
    subdir could lead a job out of its sweep into another run."""
    run = tmp_path / "A"
    assert run_cli("run", *SHORT, f"hydra.run.dir={run}", cwd=tmp_path).returncode == 0
    before = files(run)
    p = run_cli("run", "-r", *SHORT, f"hydra.run.dir={run}", cwd=tmp_path)
    assert p.returncode == 2 and f"{run} holds a run already; nothing was written" in p.stderr, p.stderr
    for subdir in ("../A", str(run)):
        p = run_cli(
            "run", "-m", *SHORT, f"hydra.sweep.dir={tmp_path / 'S'}", f"hydra.sweep.subdir={subdir}", cwd=tmp_path
        )
        assert p.returncode == 2 and "leaves the sweep directory; allowed: a path inside it" in p.stderr, p.stderr
    assert files(run) == before and not (tmp_path / "S").exists()
    assert run_cli("run", "-r", *SHORT, f"hydra.run.dir={tmp_path / 'B'}", cwd=tmp_path).returncode == 0


def test_a_run_of_relative_paths_resumes_from_another_directory(tmp_path, capsys, monkeypatch):
    """config.yaml keeps the paths a run reads absolute (benchmark.path=data.npz meant the file
    where the run started): a resume from elsewhere, as a Slurm requeue, finds them; and resume
    downloads nothing."""
    import numpy as np

    start, other = tmp_path / "start", tmp_path / "other"
    start.mkdir()
    other.mkdir()
    g = np.random.default_rng(0)
    x, y = g.normal(size=(80, 5)).astype("float32"), np.arange(80) % 4
    np.savez(start / "data.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    monkeypatch.chdir(start)
    args = ["benchmark=arrays", "benchmark.path=data.npz", "benchmark.n_experiences=2", *SHORT[:2]]
    assert cli("run", *args, f"hydra.run.dir={tmp_path / 'whole'}", capsys=capsys)[0] == 0
    with stopping_at(1):
        assert cli("run", *args, f"hydra.run.dir={tmp_path / 'cut'}", capsys=capsys)[0] == 130
    config = (tmp_path / "cut" / CONFIG).read_text()
    assert f"path: {start / 'data.npz'}" in config and "data_root: ~" not in config
    monkeypatch.chdir(other)
    code, _, err = cli("resume", str(tmp_path / "cut"), capsys=capsys)
    assert code == 0, err
    for table in ("accuracy.csv", "buffer_histogram.csv"):
        assert (tmp_path / "cut" / table).read_bytes() == (tmp_path / "whole" / table).read_bytes()


@pytest.mark.parametrize("change", ["other-samples", "fewer-samples"])
def test_a_checkpoint_is_bound_to_the_data_it_was_trained_on(tmp_path, capsys, monkeypatch, change):
    """Other data of the same shape under the same path resumed silently; data that shrank was a
    traceback. The checkpoint now holds a fingerprint of both pools."""
    import numpy as np

    monkeypatch.chdir(tmp_path)
    g = np.random.default_rng(0)
    x, y = g.normal(size=(80, 5)).astype("float32"), np.arange(80) % 4
    np.savez(tmp_path / "data.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    run = tmp_path / "run"
    with stopping_at(1):
        assert cli("run", "benchmark=arrays", "benchmark.path=data.npz", *SHORT, f"hydra.run.dir={run}", capsys=capsys)[
            0
        ]
    if change == "other-samples":
        x = g.normal(size=(80, 5)).astype("float32")
    else:
        x, y = x[:60], y[:60]
    np.savez(tmp_path / "data.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    before = files(run)
    code, _, err = cli("resume", str(run), capsys=capsys)
    assert code == 2 and "was trained on other data than the run's config.yaml reads now" in err, err
    assert files(run) == before


def test_a_config_named_with_cn_is_guarded_as_any_run(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "mine.yaml").write_text("defaults:\n  - config\n  - _self_\nepochs: 1\n")
    run = tmp_path / "run"
    p = run_cli("run", "--config-dir", str(conf), "-cn", "mine", "device=cpu", f"hydra.run.dir={run}", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "epochs: 1" in (run / "config.yaml").read_text()  # the named config was the one run
    before = {f: f.read_bytes() for f in run.rglob("*") if f.is_file()}
    p = run_cli(
        "run", "--config-dir", str(conf), "-cn=mine", "device=cpu", "seed=3", f"hydra.run.dir={run}", cwd=tmp_path
    )
    assert p.returncode == 2 and p.stderr.startswith(f"error: {run} holds a run already; nothing was written")
    assert {f: f.read_bytes() for f in run.rglob("*") if f.is_file()} == before
    p = run_cli("run", "-cn", "--help", cwd=tmp_path)
    assert p.returncode == 2 and "--config-name --help is no name" in p.stderr


def test_of_two_runs_started_into_one_directory_the_second_writes_nothing(tmp_path):
    import fcntl
    import os

    run = tmp_path / "run"
    run.mkdir()  # the first run's directory, held from its command line on: nothing in it yet
    fd = os.open(run, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for extra in ([], ["-m", "seed=0,1"]):
            key = "hydra.sweep.dir" if extra else "hydra.run.dir"
            p = run_cli("run", *SHORT, *extra, f"{key}={run}", cwd=tmp_path)
            assert p.returncode == 2 and "is in use: a replay process is training in it now" in p.stderr, p.stderr
            assert list(run.iterdir()) == []  # not even Hydra's .hydra/
    finally:
        os.close(fd)
    assert run_cli("run", *SHORT, f"hydra.run.dir={run}", cwd=tmp_path).returncode == 0


def test_an_npz_that_expands_past_the_free_memory_is_refused_before_it_is_read(tmp_path, monkeypatch):
    import os

    import numpy as np

    zeros = np.zeros((2000, 1000), dtype="float32")  # 8 MB of arrays, a few KB compressed
    np.savez_compressed(
        tmp_path / "d.npz",
        x_train=zeros,
        y_train=np.zeros(2000, "int64"),
        x_test=zeros[:10],
        y_test=np.zeros(10, "int64"),
    )
    import zipfile

    with zipfile.ZipFile(tmp_path / "d.npz") as z:  # what the zip says each array expands to
        expanded = sum(i.file_size for i in z.infolist())
    assert expanded > 8_000_000 > 200 * (tmp_path / "d.npz").stat().st_size
    real = os.sysconf
    pages = {"SC_AVPHYS_PAGES": expanded // 2 // 4096, "SC_PAGE_SIZE": 4096}  # free memory: half of what it needs
    monkeypatch.setattr(os, "sysconf", lambda name: pages.get(name) or real(name))
    args = ["benchmark=arrays", "benchmark.path=d.npz", "benchmark.n_experiences=1", *SHORT[:2]]
    p = run_cli("run", *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    free = expanded // 2 // 4096 * 4096
    assert p.stderr == (
        f"error: benchmark.path=d.npz expands to {expanded / 1e6:.1f} MB of arrays "
        f"({(tmp_path / 'd.npz').stat().st_size / 1e3:.1f} KB on disk), more than the {free / 1e6:.1f} MB of "
        "memory free; allowed: arrays that fit in memory, or benchmark=folder for data larger than memory\n"
    )
    assert not (tmp_path / "run").exists()
    monkeypatch.setattr(os, "sysconf", real)  # with the memory there is, the same file trains
    assert run_cli("run", *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path).returncode == 0


def test_a_resume_writes_no_decode_cache_outside_its_run_directory(tmp_path, capsys, monkeypatch):
    """A received run's config names `cache_dir`: resume reads a cache there, never writes one (nor
    removes what looks like its temporaries); the images are decoded in memory, to the same tables."""
    from rawfiles import write_image_folder

    monkeypatch.chdir(tmp_path)
    write_image_folder(tmp_path / "imgs", ["a", "b", "c"], 6, size=(6, 6))
    cache = tmp_path / "elsewhere"
    args = [
        "benchmark=folder",
        "benchmark.root=imgs",
        "benchmark.test_fraction=0.34",
        "benchmark.n_experiences=3",
        f"benchmark.cache_dir={cache}",
        "epochs=1",
        "progress=none",
        "device=cpu",
    ]
    assert cli("run", *args, f"hydra.run.dir={tmp_path / 'whole'}", capsys=capsys)[0] == 0
    with stopping_at(1):
        assert cli("run", *args, f"hydra.run.dir={tmp_path / 'cut'}", capsys=capsys)[0] == 130
    shutil.rmtree(cache)  # received elsewhere: no cache there; a file that looks like our temporary
    cache.mkdir()
    (cache / ".x.npy.1.tmp").write_text("not ours to remove")
    code, out, err = cli("resume", str(tmp_path / "cut"), capsys=capsys)
    assert code == 0, err
    assert f"cache_dir={cache} is outside the run directory; a resume writes nothing there: decoding in memory" in out
    assert [p.name for p in cache.iterdir()] == [".x.npy.1.tmp"]
    for table in ("accuracy.csv", "buffer_histogram.csv"):
        assert (tmp_path / "cut" / table).read_bytes() == (tmp_path / "whole" / table).read_bytes()
