"""The registry: one decorator registers a builder; names, options and errors are uniform."""
import pytest

from robustbench_ode.errors import UserError
from robustbench_ode.parsing import parse_kv, parse_number
from robustbench_ode.registry import ATTACKS, DATASETS, METHODS, MODELS, Registry
from robustbench_ode.training.methods import build_method, method_entry


def make_registry() -> Registry:
    reg = Registry("widget", "robustbench_ode")  # any importable package: nothing else registers here

    @reg.register("box", "a box")
    def box(size: int = 3, ratio: float = 0.5, solid: bool = True, colour: str = "red"):
        return (size, ratio, solid, colour)

    return reg


def test_registering_is_one_decorator_and_the_builder_appears_by_name():
    reg = make_registry()
    assert reg.names() == ["box"]
    assert reg.get("box").description == "a box"
    assert reg.get("box").build() == (3, 0.5, True, "red")


def test_string_options_are_coerced_to_the_annotated_types():
    assert make_registry().get("box").build(size="7", ratio="8/255", solid="no", colour="blue") == (7, 8 / 255, False, "blue")


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UserError, match=r"unknown widget 'sphere' \(known: box\)"):
        make_registry().get("sphere")


@pytest.mark.parametrize("raw", [{"size": "three"}, {"solid": "maybe"}, {"ratio": "1/0"}])
def test_bad_option_values_are_user_errors(raw):
    with pytest.raises(UserError, match="expects"):
        make_registry().get("box").build(**raw)


def test_unknown_option_names_the_accepted_ones():
    with pytest.raises(UserError, match="no option 'depth' .*size, ratio, solid, colour"):
        make_registry().get("box").build(depth="2")


def test_registering_a_name_twice_is_a_programming_error():
    reg = make_registry()
    with pytest.raises(ValueError):
        reg.register("box", "again")(lambda: None)


def test_the_four_project_registries_are_populated():
    assert {"resnet56", "resnet50", "odenet", "preact_resnet18"} <= set(MODELS.names())
    assert {"fgsm", "pgd", "difgsm", "boundary"} <= set(ATTACKS.names())
    assert {"digits", "mnist", "cifar10"} <= set(DATASETS.names())
    assert {"standard", "pgd", "trades", "yopo"} <= set(METHODS.names())


def test_training_methods_are_a_registry_entry_with_typed_options_and_the_usual_unknown_name_error():
    entry = method_entry("standard")
    assert entry is METHODS.get("standard") and entry.kind == "training method"
    method = build_method("standard", {"label_smoothing": "0.1"})
    assert isinstance(method, entry.builder) and method.label_smoothing == 0.1
    with pytest.raises(UserError, match=r"unknown training method 'sgd' \(known: pgd, standard, trades, yopo"):
        build_method("sgd")


def test_key_value_pairs_and_fractions_parse():
    assert parse_kv(["a=1", "long-name = x=y"]) == {"a": "1", "long_name": "x=y"}
    assert parse_number("8/255") == 8 / 255
    with pytest.raises(UserError, match="key=value"):
        parse_kv(["novalue"])
