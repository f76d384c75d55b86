import subprocess


def _run(*args):
    return subprocess.run(["keras-resnet", *args], capture_output=True, text=True, timeout=300)


def test_summary_command_prints_the_table():
    result = _run("summary", "resnet20", "resnet56")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()}
    assert rows["resnet20"][4] == "269,722" and rows["resnet56"][4] == "853,018"


def test_summary_command_rejects_unknown_models():
    result = _run("summary", "resnet19")
    assert result.returncode == 2
    assert "unknown model 'resnet19'" in result.stderr and "resnet20" in result.stderr
