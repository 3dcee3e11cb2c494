"""The ``coffea-ad`` command line: one vocabulary (each shared option defined once, with one meaning, default
and help), ``--help`` for every command, and the exit codes (an error of coffea_ad: one line, status 1;
a usage error: status 2)."""

from __future__ import annotations

import argparse

import pytest

from coffea_ad.cli import COMMANDS, build_parser, main, options
from coffea_ad.errors import ConfigurationError

#: Which commands must offer which shared option (the issue's list of options that drifted apart).
EXPECTED = {
    options.SEED: {"generate", "train", "fit", "search"},
    options.WORKERS: {"generate", "features", "score", "search", "demo"},
    options.DEVICE: {"train", "search"},
    options.FEATURES: {"features", "train", "score", "search"},
    options.FEATURE_MODULE: {"features", "score", "search"},
    options.REGION: {"train", "score", "fit", "search"},
    options.MASS: {"train", "score", "fit", "search"},
    options.NO_PROGRESS: {"generate", "features", "train", "score", "search"},
    options.STRICT: {"features", "score", "search"},
}


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (action,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return dict(action.choices)


def actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: action for action in parser._actions for flag in action.option_strings}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_shared_option_is_the_one_defined_in_options(command):
    defined = actions(subparsers()[command])
    for option in options.SHARED:
        present = [flag for flag in option.flags if flag in defined]
        if not present:
            continue
        action = defined[present[0]]
        assert tuple(action.option_strings) == option.flags, (command, option.flags)
        for key in ("default", "help", "type", "choices", "metavar"):
            assert getattr(action, key) == option.settings.get(key, getattr(action, key)), (command, option.flags, key)
        assert action.dest == option.settings.get("dest", option.flags[-1].lstrip("-").replace("-", "_"))


@pytest.mark.parametrize("option", list(EXPECTED), ids=lambda option: option.flags[-1])
def test_the_options_of_the_issue_are_offered_by_every_command_that_needs_them(option):
    offering = {command for command, parser in subparsers().items() if option.flags[-1] in actions(parser)}
    assert offering == EXPECTED[option]


def test_the_old_spellings_are_gone_and_the_defaults_are_one():
    for command, parser in subparsers().items():
        flags = actions(parser)
        # search alone has a --method: its method has a default (cathode), so it is an option there
        old = {"--fit-variable", "--variable"} | ({"--method"} if command != "search" else set())
        assert not old & set(flags), command
    assert options.SEED.settings["default"] == 0
    assert options.DEVICE.settings["default"] == "auto"
    import inspect

    from coffea_ad.generate import generate

    assert inspect.signature(generate).parameters["seed"].default == options.SEED.settings["default"]


def test_methods_are_positional_in_train_and_fit():
    from coffea_ad.workflow.fit import FIT_METHODS

    parser = build_parser()
    assert parser.parse_args(["train", "cathode", "t.parquet", "-o", "m"]).method == "cathode"
    fit = parser.parse_args(["fit", "h.root", "-o", "f"])
    assert (fit.method, str(fit.histograms)) == ("bumphunt", "h.root")
    assert parser.parse_args(["fit", "abcd", "h.root", "-o", "f"]).method == "abcd"
    (method,) = [a for a in subparsers()["fit"]._actions if a.dest == "method"]
    assert tuple(method.choices) == FIT_METHODS


def test_lists_and_regions_parse_the_same_everywhere():
    parser = build_parser()
    assert parser.parse_args(["train", "cwola", "t", "-o", "m", "--features", "lhco, deta_jj"]).features == [
        "lhco",
        "deta_jj",
    ]
    assert parser.parse_args(["fit", "h.root", "-o", "f", "--region", "a,b,c,d"]).region == ["a", "b", "c", "d"]
    assert options.one_region(["deta_sr"]) == "deta_sr" and options.one_region(None) is None
    with pytest.raises(ConfigurationError, match="one region flag here, got 2: deta_sr, deta_cr"):
        options.one_region(["deta_sr", "deta_cr"])


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: coffea-ad {command}" in capsys.readouterr().out


def test_generate_help_points_to_processes(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = capsys.readouterr().out
    assert "coffea-ad processes" in text and "--list" not in text


def test_an_error_of_coffea_ad_is_one_line_and_status_1(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "missing.root"), "-o", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("coffea-ad fit: error: histogram file") and error.count("\n") == 1
    assert main(["generate", "qcd_dijet", "-n", "5", "-o", str(tmp_path / "x.root"), "--set", "nokey"]) == 1
    assert capsys.readouterr().err == "coffea-ad generate: error: --set expects KEY=VALUE, got 'nokey'\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["fit", "bumphnt", "h.root", "-o", "f"],
        ["generate", "qcd_dijet", "-n", "ten", "-o", "x.root"],
        ["features", "f.json", "-o", "o", "-j", "2", "--scheduler", "tcp://x:1"],
        ["train", "cathode", "t.parquet", "-o", "m", "--device", "tpu"],
    ],
)
def test_a_usage_error_is_status_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_score_names_models_by_name_file_or_folder():
    from coffea_ad.cli.score import parse_models

    models = parse_models(["ae=models/x.onnx", "cathode/model.onnx", "flow.onnx"])
    assert {name: str(path) for name, path in models.items()} == {
        "ae": "models/x.onnx",
        "cathode": "cathode/model.onnx",
        "flow": "flow.onnx",
    }
    with pytest.raises(ConfigurationError, match="score name 'x'"):
        parse_models(["a/x.onnx", "b/x.onnx"])
