from __future__ import annotations

from pathlib import Path

import pytest

from safehold import config
from safehold.errors import ConfigError


def test_defaults_need_nothing() -> None:
    s = config.load(None, environ={})
    assert s.port == 8232 and s.host == "127.0.0.1" and s.data_dir == Path("data")
    assert s.db_url().startswith("sqlite:///") and s.db_url().endswith("data/safehold.db")


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text('port = 9000\nhost = "127.0.0.2"\nmax_body_bytes = 10\n')
    s = config.load(str(f), {"host": "127.0.0.3"}, environ={"SAFEHOLD_PORT": "9100"})
    assert (s.port, s.host, s.max_body_bytes) == (9100, "127.0.0.3", 10)


def test_unknown_setting_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'prot'"):
        config.load(str(f), environ={})


def test_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="port"):
        config.load(None, environ={"SAFEHOLD_PORT": "eighty"})
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(str(tmp_path / "missing.toml"), environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(str(bad), environ={})
