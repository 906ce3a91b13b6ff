"""Tests of search-space parsing, normalization and rounding."""

import textwrap

import numpy as np
import pytest

from launch.config import ConfigError, parse_section
from orchestrator.space import SearchSpace

VALID = """\
parameters:
  c1: {type: int, low: 32, high: 150}
  phi: {type: float, low: 1.0, high: 2.0, step: 0.1}
  lr: {type: float, low: 0.001, high: 0.1, log: true}
  stem: {type: choice, choices: [basic, deep]}
objective: {name: top1, direction: maximize}
"""


def _space(text: str) -> SearchSpace:
    return SearchSpace.from_section(parse_section(textwrap.dedent(text), "space.yaml"))


def _with_param(line: str) -> str:
    return (
        f"parameters:\n  x: {{type: int, low: 0, high: 10}}\n  {line}\nobjective: {{name: acc}}\n"
    )


def test_space_parses_valid_file(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(VALID)
    space = SearchSpace.from_yaml(path)
    assert space.names == ["c1", "phi", "lr", "stem"]
    assert space.dim == 3
    assert space.objective.name == "top1"
    assert space.objective.sign == 1.0
    assert space.numeric[1].step == 0.1
    assert space.numeric[2].log
    assert space.combinations() == [("basic",), ("deep",)]


def test_space_from_experiment_subsection():
    text = "name: demo\nspace:\n" + textwrap.indent(VALID, "  ")
    root = parse_section(text, "experiment.yaml")
    space = SearchSpace.from_section(root.get_section("space"))
    assert space.dim == 3


def test_space_subsection_errors_name_full_key():
    text = "space:\n  parameters:\n    x: {type: int, low: 5, high: 1}\n  objective: {name: a}\n"
    root = parse_section(text, "experiment.yaml")
    with pytest.raises(ConfigError, match=r"experiment.yaml:3: key 'space.parameters.x.high'"):
        SearchSpace.from_section(root.get_section("space"))


def test_space_minimize_direction_negates():
    space = _space(
        _with_param("y: {type: float, low: 0, high: 1}").replace(
            "{name: acc}", "{name: loss, direction: minimize}"
        )
    )
    assert space.objective.sign == -1.0


@pytest.mark.parametrize(
    "line, message",
    [
        (
            "y: {type: float, low: 0, high: 1, stp: 0.1}",
            r"space.yaml:3: key 'parameters.y.stp': unknown key",
        ),
        ("y: {type: real, low: 0, high: 1}", r"unknown type 'real'"),
        ("y: {type: int, low: 0.5, high: 1}", r"key 'parameters.y.low': expected an integer"),
        ("y: {type: float, low: 2, high: 1}", r"high \(1\) must be greater than low \(2\)"),
        ("y: {type: float, low: 1, high: 1}", r"must be greater than low"),
        ("y: {type: float, low: 0, high: 1, step: 0}", r"step must be positive"),
        ("y: {type: float, low: 0, high: 1, step: -0.1}", r"step must be positive"),
        ("y: {type: float, low: 0, high: 1, step: 2}", r"larger than the range"),
        ("y: {type: float, low: 0, high: 1, step: 0.3}", r"does not divide"),
        ("y: {type: float, low: 0, high: 1, log: true}", r"log: true needs low > 0"),
        ("y: {type: float, low: 0.1, high: 1, log: true, step: 0.1}", r"cannot be combined"),
        ("y: {type: float, low: 0, high: 1, log: yes}", r"expected true or false"),
        ("y: {type: float, low: 0, high: '1'}", r"remove the quotes"),
        ("y: {type: float, low: no, high: 1}", r"expected a number, got a bool"),
        ("y: {type: int, low: 0, high: 1:30}", r"base-60"),
        ("y: {type: float, low: 0, high: 1:30}", r"base-60"),
        ("y: {type: float, low: 0, high: .inf}", r"finite number"),
        ("y: {type: float, low: 0}", r"key 'parameters.y.high': missing required key"),
        ("y: {type: true, low: 0, high: 1}", r"expected a string, got a bool"),
        ("y: {type: choice, choices: []}", r"list is empty"),
        ("y: {type: choice, choices: [a, a]}", r"duplicate choice 'a'"),
        ("y: {type: choice, choices: [a, yes]}", r"parameters.y.choices\[1\]': expected a string"),
        ("y: {type: choice, choices: [a, 1.5]}", r"expected a string or an integer"),
        ("y: {type: choice, choices: [a, 1:20]}", r"base-60"),
        ("y: {type: choice, choices: a}", r"expected a list"),
        ("y: {type: choice, choices: [a], low: 0}", r"unknown key"),
        ("y: [1, 2]", r"expected a mapping"),
        ("x: {type: int, low: 0, high: 3}", r"duplicate key \(first defined on line 2\)"),
        ("acc: {type: int, low: 0, high: 3}", r"'acc' is also a parameter name"),
        ("2y: {type: int, low: 0, high: 3}", r"invalid parameter name"),
        ("y: !!python/object:os.system {type: int}", r"tag .* is not allowed"),
    ],
)
def test_space_rejects_bad_parameter(line, message):
    with pytest.raises(ConfigError, match=message):
        _space(_with_param(line))


@pytest.mark.parametrize(
    "text, message",
    [
        ("parameters: {}\nobjective: {name: a}\n", r"no parameters given"),
        (
            "parameters:\n  s: {type: choice, choices: [a]}\nobjective: {name: a}\n",
            r"at least one parameter of type int or float",
        ),
        ("parameters:\n  x: {type: int, low: 0, high: 1}\n", r"key 'objective': missing required"),
        (
            "parameters:\n  x: {type: int, low: 0, high: 1}\n"
            "objective: {name: a, direction: up}\n",
            r"unknown direction 'up'",
        ),
        (
            "parameters:\n  x: {type: int, low: 0, high: 1}\nobjective: {name: a, goal: max}\n",
            r"key 'objective.goal': unknown key",
        ),
        (
            "parameters:\n  x: {type: int, low: 0, high: 1}\nobjective: {name: a}\nseed: 3\n",
            r"key 'seed': unknown key",
        ),
        (
            "parameters:\n  x: {type: int, low: 0, high: 1}\nobjective: {name: 12}\n",
            r"expected a string",
        ),
    ],
)
def test_space_rejects_bad_file(text, message):
    with pytest.raises(ConfigError, match=message):
        _space(text)


def test_space_missing_file_names_path(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        SearchSpace.from_yaml(tmp_path / "absent.yaml")


def test_space_error_names_file_and_line(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(VALID.replace("high: 2.0, step: 0.1", "high: 2.0, step: 0.3"))
    with pytest.raises(ConfigError, match=rf"{path}:3: key 'parameters.phi.step'"):
        SearchSpace.from_yaml(path)


def test_space_int_and_step_rounding():
    space = _space(VALID)
    c1, phi, lr = space.numeric
    np.testing.assert_array_equal(
        c1.round_values(np.array([32.4, 90.6, 149.5, 200])), [32, 91, 150, 150]
    )
    np.testing.assert_allclose(
        phi.round_values(np.array([1.04, 1.06, 1.96, 2.0])), [1.0, 1.1, 2.0, 2.0]
    )
    assert phi.python_value(phi.round_values(np.array([1.7]))[0]) == 1.7
    rounded = space.round_unit(np.array([[0.5, 0.5, 0.5]]))
    assert space.from_unit(rounded[0], ("deep",)) == {
        "c1": 91,
        "phi": 1.5,
        "lr": pytest.approx(0.01),
        "stem": "deep",
    }


def test_space_int_step_grid():
    space = _space(_with_param("y: {type: int, low: 16, high: 64, step: 8}"))
    y = space.numeric[1]
    np.testing.assert_array_equal(y.round_values(np.array([19.9, 20.1, 63])), [16, 24, 64])
    assert space.from_unit(np.array([0.0, 0.3]), ()) == {"x": 0, "y": 32}


def test_space_log_normalization():
    lr = _space(VALID).numeric[2]
    np.testing.assert_allclose(lr.to_unit(np.array([0.001, 0.01, 0.1])), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(lr.from_unit(np.array([0.5])), [0.01])


def test_space_check_params():
    space = _space(VALID)
    good = {"c1": 40.0, "phi": 1.23, "lr": 0.05, "stem": "deep"}
    assert space.check_params(good)["c1"] == 40
    assert isinstance(space.check_params(good)["c1"], int)
    for bad, message in [
        ({**good, "c1": 40.5}, "must be an integer"),
        ({**good, "c1": 10}, "outside its range"),
        ({**good, "phi": float("nan")}, "not a finite number"),
        ({**good, "stem": "wide"}, "not one of the choices"),
        ({**good, "phi": True}, "not a number"),
        ({k: v for k, v in good.items() if k != "lr"}, r"missing \['lr'\]"),
        ({**good, "extra": 1}, r"unknown \['extra'\]"),
    ]:
        with pytest.raises(ValueError, match=message):
            space.check_params(bad)


def test_space_on_boundary_flags():
    space = _space(VALID)
    assert space.on_boundary(np.array([1.0, 0.0, 0.5])) == {"c1": "high", "phi": "low"}
    assert space.on_boundary(np.array([0.2, 0.5, 0.5])) == {}


def test_space_integer_choices():
    space = _space(_with_param("k: {type: choice, choices: [3, 5, '7x']}"))
    assert space.choice[0].choices == (3, 5, "7x")
