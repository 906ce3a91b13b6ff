import pytest

from launch.config import ConfigError, parse_section, parse_walltime_min
from launch.site import load_site


def _section(text):
    return parse_section(text, "site.yaml")


def test_config_duplicate_key_names_line():
    with pytest.raises(
        ConfigError, match=r"site.yaml:3: key 'a': duplicate key \(first defined on line 1\)"
    ):
        _section("a: 1\nb: 2\na: 3\n")


def test_config_python_tag_rejected():
    with pytest.raises(ConfigError, match="tag .*python.* is not allowed"):
        _section("a: !!python/object/apply:os.system ['true']\n")


def test_config_sexagesimal_where_string_belongs():
    section = _section("walltime: 2:00:00\n")
    with pytest.raises(ConfigError, match="base-60 number; put the value in quotes"):
        section.get_str("walltime")


def test_config_sexagesimal_where_number_belongs():
    section = _section("low: 1:30\n")
    with pytest.raises(ConfigError, match="base-60"):
        section.get_float("low")


def test_config_bool_where_string_belongs():
    section = _section("name: yes\n")
    with pytest.raises(ConfigError, match="expected a string, got a bool"):
        section.get_str("name")


def test_config_quoted_number_rejected():
    section = _section('low: "32"\n')
    with pytest.raises(ConfigError, match="got the string '32'; remove the quotes"):
        section.get_int("low")


def test_config_float_where_int_belongs():
    section = _section("nodes: 2.5\n")
    with pytest.raises(ConfigError, match="expected an integer"):
        section.get_int("nodes")


def test_config_unknown_key_lists_valid():
    section = _section("colour: red\n")
    with pytest.raises(ConfigError, match="unknown key; valid keys are: color, size"):
        section.check_keys(["color", "size"])


def test_config_missing_required():
    section = _section("a: 1\n")
    with pytest.raises(ConfigError, match="key 'b': missing required key"):
        section.check_keys(["a", "b"], required=("b",))


def test_config_empty_file():
    with pytest.raises(ConfigError, match="the file is empty"):
        _section("")


def test_config_invalid_yaml_has_line():
    with pytest.raises(ConfigError, match=r"site.yaml:2: invalid YAML"):
        _section("a: [1, 2\nb: 3\n")


@pytest.mark.parametrize(
    "text,minutes",
    [
        ("30", 30),
        ("02:00:00", 120),
        ("1-00:00:00", 1440),
        ("1:30", 90),
        ("90", 90),
        ("0:00:30", 1),
    ],
)
def test_walltime_forms(text, minutes):
    section = _section("walltime: x\n")
    assert parse_walltime_min(text, section, "walltime") == minutes


@pytest.mark.parametrize("text", ["2h", "1:75:00", "0", "-1:00"])
def test_walltime_invalid(text):
    section = _section("walltime: x\n")
    with pytest.raises(ConfigError, match="walltime"):
        parse_walltime_min(text, section, "walltime")


def test_site_local_profile_loads():
    site = load_site("local")
    assert site.backend == "local"
    assert site.backend_profile.ranks_per_job == 2


def test_site_unknown_name_lists_search_dirs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no site profile named 'nowhere'"):
        load_site("nowhere")


def test_site_unknown_backend(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("backend: pbs\n")
    with pytest.raises(ConfigError, match="unknown backend 'pbs'"):
        load_site(str(path))


def test_site_negative_concurrency(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("backend: local\nmax_concurrent_trials: 0\n")
    with pytest.raises(
        ConfigError, match="x.yaml:2: key 'max_concurrent_trials': must be positive"
    ):
        load_site(str(path))
