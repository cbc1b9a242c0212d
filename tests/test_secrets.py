"""No secret leaves the machine: credentials in URLs and secret config values stay out of every
record, report, log line and error, on real offline runs; a rotated token is no change, while a
new host, path, branch or commit still is; records written before the redaction are redacted
when shown and compared without their credentials."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest
from helpers import cli, cli_json, git, model_and_opt, offline_project, start, write

import resumeguard
from resumeguard.collect.deps import collect_deps
from resumeguard.io.hashing import digest_json
from resumeguard.redact import comparable_url, is_secret_key, redact_text, redact_url
from resumeguard.stores.interface import RunRef
from resumeguard.stores.layout import CONFIG_KEY
from resumeguard.stores.offline import OfflineStore

URL_SECRETS = ["ghpSECRETone", "glpatSECRETtwo", "idxSECRETthree", "qSECRETfour", "remSECRETfive"]
CONFIG_SECRETS = ["cfgSECRETsix", "hubSECRETseven", "pwSECRETeight"]


def requirements(token: str = "ghpSECRETone", ref: str = "v1", host: str = "github.com") -> str:
    return (
        f"mylib @ git+https://bob:{token}@{host}/org/mylib.git@{ref}\n"
        "-e git+https://oauth2:glpatSECRETtwo@gitlab.com/org/tool.git#egg=tool\n"
        "--extra-index-url https://user:idxSECRETthree@pypi.example.com/simple\n"
        "--find-links https://files.example.com/wheels/?token=qSECRETfour\n"
        "priv @ git+https://${GH_TOKEN}@github.com/org/priv.git\n"
        "torch>=2.1\n"
    )


CONFIG = {
    "lr": 1e-3,
    "api_key": "cfgSECRETsix",
    "hub_token": "hubSECRETseven",
    "db": {"Password": "pwSECRETeight", "sort_key": "length"},
    "pad_token": "<pad>",
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = offline_project(tmp_path, monkeypatch)
    write(repo, {"requirements.txt": requirements()})
    git(repo, "remote", "add", "origin", "https://me:remSECRETfive@github.com/org/proj.git")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "requirements")
    return repo


def leaks(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s in text]


def ours(caplog: pytest.LogCaptureFixture) -> str:
    """What resumeguard logged (W&B's own debug lines quote the user's config as given)."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "resumeguard")


def files_text(root: Path, skip: tuple[str, ...] = ()) -> str:
    """Every file below ``root`` as text (binary ones decoded loosely), but ``skip``'s names."""
    parts = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name not in skip:
            parts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


# --- the rules, one row per case ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("https://bob:tok@github.com/o/r.git@v1", "https://***@github.com/o/r.git@v1"),
        ("git+https://ghp_abc@github.com/o/r.git", "git+https://***@github.com/o/r.git"),
        ("https://oauth2:glpat-x@gitlab.com/o/r", "https://***@gitlab.com/o/r"),
        ("https://${USER}:${TOKEN}@host/simple", "https://${USER}:${TOKEN}@host/simple"),
        ("https://oauth2:${TOKEN}@host/simple", "https://oauth2:${TOKEN}@host/simple"),
        ("https://${GH_TOKEN}@github.com/o/r.git", "https://${GH_TOKEN}@github.com/o/r.git"),
        ("https://bob:${TOKEN}x@host/", "https://***@host/"),
        ("git+ssh://git@github.com/o/r.git", "git+ssh://git@github.com/o/r.git"),
        ("ssh://bob:pw@host/r.git", "ssh://***@host/r.git"),
        ("https://host/w/?token=abc&x=1#frag", "https://host/w/?token=***&x=1#frag"),
        ("https://b.s3.amazonaws.com/f.whl?X-Amz-Signature=abc", None),
        ("https://host/o/r.git#egg=tool&subdirectory=lib", None),
        ("https://host:8443/x", None),
    ],
)
def test_urls_are_redacted_before_anything_is_written(url: str, redacted: str | None) -> None:
    expected = redacted if redacted is not None else url.replace("Signature=abc", "Signature=***")
    assert redact_url(url) == expected
    assert redact_text(f"line {url} end") == f"line {expected} end"


def test_comparison_leaves_every_user_info_out() -> None:
    a = comparable_url("https://bob:old@github.com/o/r.git@v1")
    assert (
        a
        == comparable_url("https://bob:new@github.com/o/r.git@v1")
        == comparable_url("https://***@github.com/o/r.git@v1")
    )
    assert a != comparable_url("https://bob:old@github.com/o/r.git@v2"), "a new ref"
    assert a != comparable_url("https://bob:old@gitlab.com/o/r.git@v1"), "a new host"
    assert a != comparable_url("https://bob:old@github.com/o/other.git@v1"), "a new path"


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("api_key", True),
        ("API_KEY", True),
        ("apikey", True),
        ("ApiKey", True),
        ("access_key", True),
        ("secret_key", True),
        ("secret", True),
        ("password", True),
        ("passwd", True),
        ("token", True),
        ("hub_token", True),
        ("wandb_token", True),
        ("sort_key", False),
        ("text_key", False),
        ("pad_token", False),
        ("eos_token", False),
        ("max_tokens", False),
        ("tokenizer_name", False),
        ("lr", False),
    ],
)
def test_secret_config_key_names(key: str, secret: bool) -> None:
    assert is_secret_key(key, "a-credential") is secret


def test_a_token_ending_setting_that_is_a_number_is_compared(project: Path) -> None:
    """``max_token: 512`` is a setting, not a credential: changing it blocks, while a rotated
    ``hub_token`` (text) goes ahead."""
    assert is_secret_key("hub_token", "hf_abc") and not is_secret_key("max_token", 512)
    assert is_secret_key("api_key", 123), "a name that is a secret's whole is one whatever it holds"
    run_id = record_a_run(project, extra={"max_token": 512})
    start(run_id, project, config={**CONFIG, "max_token": 512, "hub_token": "new"}).finish()
    with pytest.raises(resumeguard.ResumeBlocked, match=r"config\.max_token"):
        start(run_id, project, config={**CONFIG, "max_token": 1024}, resume="must")


def test_more_secret_names_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not is_secret_key("hf_auth")
    monkeypatch.setenv("RESUMEGUARD_SECRET_KEYS", "hf_auth, Vault_Ref")
    assert is_secret_key("hf_auth") and is_secret_key("vault_ref")


def test_installed_direct_url_metadata_is_not_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = tmp_path / "site" / "private_pkg-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: private-pkg\nVersion: 1.0\n")
    (info / "direct_url.json").write_text(
        json.dumps({"url": "https://bob:distSECRET@github.com/o/p.git", "vcs_info": {"vcs": "git"}})
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    deps = collect_deps(tmp_path, [])
    assert deps.installed["private-pkg"] == "1.0"
    assert "distSECRET" not in json.dumps(deps.to_json())


# --- a real run ----------------------------------------------------------------------------------


def record_a_run(repo: Path, extra: dict | None = None) -> str:
    run_id = f"sec{uuid.uuid4().hex[:8]}"
    model, opt = model_and_opt()
    run = start(run_id, repo, config={**CONFIG, **(extra or {})}, optimizer=opt, model=model)
    run.log({"loss": 1.0}, step=0)
    resumeguard.save_checkpoint(
        run, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 0}, "ck.pt"
    )
    run.finish()
    return run_id


def test_a_run_with_private_requirements_records_no_secret(
    project: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    run_id = record_a_run(project)
    stored = OfflineStore().fetch(RunRef(run_id))
    record_text = json.dumps(stored.record)
    assert not leaks(record_text, URL_SECRETS + CONFIG_SECRETS)
    assert not leaks(json.dumps(stored.config[CONFIG_KEY]), URL_SECRETS + CONFIG_SECRETS)
    fp = stored.record["fingerprint"]
    assert (
        fp["deps"]["requirements"]["mylib"]
        == ("mylib@ git+https://***@github.com/org/mylib.git@v1")
        or "https://***@github.com/org/mylib.git@v1" in fp["deps"]["requirements"]["mylib"]
    )
    assert "${GH_TOKEN}" in fp["deps"]["requirements"]["priv"], "placeholders are kept"
    assert fp["code"]["remote"] == "https://***@github.com/org/proj.git"
    assert set(fp["config"]) == {"lr", "db", "pad_token"}
    assert fp["config"]["db"] == {"sort_key": "length"}
    # Whatever resumeguard wrote into the run directory, and W&B's log of the run, holds no URL
    # secret (the config secrets are the user's own config, which W&B keeps as given).
    wandb_dir = Path(stored.directories[0])
    assert not leaks(files_text(wandb_dir, skip=("requirements.txt",)), URL_SECRETS)
    assert not leaks(files_text(project, skip=("requirements.txt", "config")), URL_SECRETS)
    for args in (("show", "--run-id", run_id, "--offline"), ("check", "--run-id", run_id)):
        code, out, err = cli(capsys, *args)
        assert code == 0, err
        assert not leaks(out + err, URL_SECRETS + CONFIG_SECRETS)
        code, body = cli_json(capsys, *args)
        assert not leaks(json.dumps(body), URL_SECRETS + CONFIG_SECRETS)
    assert not leaks(ours(caplog), URL_SECRETS + CONFIG_SECRETS)


def test_a_rotated_token_is_no_change_and_a_new_ref_is(
    project: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    run_id = record_a_run(project)
    write(project, {"requirements.txt": requirements(token="ghpNEWtoken")})
    git(project, "remote", "set-url", "origin", "https://me:remNEWtoken@github.com/org/proj.git")
    git(project, "commit", "-qam", "rotate")
    code, body = cli_json(capsys, "check", "--run-id", run_id, "--policy", "strict")
    paths = [f["path"] for f in body["findings"]]
    assert not [p for p in paths if p.startswith(("deps.", "code.remote"))], paths
    write(project, {"requirements.txt": requirements(token="ghpNEWtoken", ref="v2")})
    code, body = cli_json(capsys, "check", "--run-id", run_id)
    [mylib] = [f for f in body["findings"] if f["path"] == "deps.requirements.mylib"]
    assert code == 1 and mylib["severity"] == "block"
    assert "@v1" in mylib["recorded"] and "@v2" in mylib["current"]
    assert not leaks(json.dumps(body), [*URL_SECRETS, "ghpNEWtoken", "remNEWtoken"])
    # The same through the Python front door: the report a script sees.
    caplog.set_level(logging.DEBUG)
    with pytest.raises(resumeguard.ResumeBlocked) as info:
        start(run_id, project, config=CONFIG, resume="must")
    assert "deps.requirements.mylib" in str(info.value)
    assert not leaks(str(info.value) + ours(caplog), [*URL_SECRETS, "ghpNEWtoken"])


def test_a_new_host_and_a_new_remote_are_changes(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = record_a_run(project)
    write(project, {"requirements.txt": requirements(host="evil.example.com")})
    git(project, "remote", "set-url", "origin", "https://me:remSECRETfive@github.com/fork/proj.git")
    git(project, "commit", "-qam", "moved")
    code, body = cli_json(capsys, "check", "--run-id", run_id)
    paths = {f["path"] for f in body["findings"]}
    assert {"deps.requirements.mylib", "code.remote"} <= paths and code == 1
    assert not leaks(json.dumps(body), URL_SECRETS)


def test_a_changed_secret_config_value_is_not_compared(project: Path) -> None:
    run_id = record_a_run(project)
    changed = {**CONFIG, "api_key": "other", "hub_token": "other", "db": {"sort_key": "length"}}
    run = start(run_id, project, config=changed, resume="must")
    run.finish()
    with pytest.raises(resumeguard.ResumeBlocked, match=r"config\.db"):
        start(run_id, project, config={**CONFIG, "db": {"sort_key": "other"}}, resume="must")


def test_a_record_written_before_redaction_is_shown_and_compared_without_secrets(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An older resumeguard recorded the token verbatim and the secret config keys: `show`,
    `check` and the reports redact them; the same token, or a rotated one, is no change."""
    run_id = record_a_run(project)
    store, ref = OfflineStore(), RunRef(run_id)
    stored = store.fetch(ref)
    record = json.loads(json.dumps(stored.record))
    fp = record["fingerprint"]
    fp["deps"]["requirements"]["mylib"] = (
        "mylib@ git+https://bob:ghpSECRETone@github.com/org/mylib.git@v0"
    )
    fp["code"]["remote"] = "https://github.com/org/proj.git"
    fp["config"].update({"api_key": "cfgSECRETsix", "hub_token": "hubSECRETseven"})
    compact = {**stored.config[CONFIG_KEY], "record_digest": digest_json(record)}
    compact.pop("previous_record_digest", None)
    store.write_record(ref, record, compact)
    secrets = URL_SECRETS + CONFIG_SECRETS
    for args in (("show", "--run-id", run_id), ("check", "--run-id", run_id)):
        _, out, err = cli(capsys, *args)
        assert not leaks(out + err, secrets), args
        _, body = cli_json(capsys, *args)
        assert not leaks(json.dumps(body), secrets), args
    paths = {f["path"]: f for f in body["findings"]}
    assert "deps.requirements.mylib" in paths, "the ref moved v0 -> v1: still a change"
    assert "github.com/org/mylib.git@v0" in paths["deps.requirements.mylib"]["recorded"]
    assert not {"code.remote", "config.api_key", "config.hub_token"} & set(paths)


def test_errors_and_log_lines_are_redacted(
    project: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    error = resumeguard.BadInput("cannot read https://bob:errSECRET@host/x")
    assert "errSECRET" not in str(error) and "https://***@host/x" in str(error)
    caplog.set_level(logging.INFO)
    logging.getLogger("resumeguard").warning("fetching %s", "https://a:logSECRET@h/x")
    assert "logSECRET" not in caplog.text and "https://***@h/x" in ours(caplog)
    # A W&B server address with credentials in it, unreachable: the check cannot answer.
    monkeypatch.setenv("WANDB_BASE_URL", "http://admin:baseSECRET@127.0.0.1:9")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("RESUMEGUARD_TIMEOUT", "2")
    code, out, err = cli(capsys, "check", "--run-id", "someone/p/abc123")
    assert code in (2, 3), err
    assert "baseSECRET" not in out + err


def test_the_wandb_run_itself_is_untouched(project: Path) -> None:
    """The user's own config keys are theirs: W&B keeps them as given."""
    run_id = record_a_run(project)
    stored = OfflineStore().fetch(RunRef(run_id))
    assert stored.config.get("api_key") in ("cfgSECRETsix", {"value": "cfgSECRETsix"})
