"""A link's view choices (seq, layer, unit, t) are checked against the model the link opens
on: what it does not have is named, with what it has, in the one warning a link's rejected
parameters get, and the pickers open on their defaults (docs/APP.md's promise)."""
import pytest
from test_app import fresh_session, linked, no_exception  # noqa: F401

SMALL_LINK = {"task": "adding", "seq_len": "12", "hidden": "8", "probe_count": "4"}


def _warnings(at) -> list[str]:
    return [w.value for w in at.warning if "Not used from this link" in w.value]


def test_out_of_range_view_choices_are_named_with_what_the_model_has_in_one_warning():
    at = linked({**SMALL_LINK, "unit": "99999", "layer": "7", "t": "12", "seq": "4", "colour": "red"})
    no_exception(at)
    [warning] = _warnings(at)
    for said in ("unit=99999 (this model has 8 units: 0 to 7)", "layer=7 (this model has 1 layer: 0)",
                 "t=12 (its sequences have 12 steps: 0 to 11)", "seq=4 (this model has 4 probe sequences: 0 to 3)",
                 "colour: not a setting of this app"):
        assert said in warning
    assert not {"unit", "layer", "t", "seq"} & set(at.query_params)          # dropped, not carried on
    at.switch_page("pages/step.py").run()
    no_exception(at)
    assert at.number_input(key="step_unit").value == 0 and at.slider(key="step_t").value == 0


def test_view_choices_the_model_has_are_used_without_a_word():
    at = linked({**SMALL_LINK, "unit": "7", "t": "11", "seq": "3", "layer": "0"})
    no_exception(at)
    assert not _warnings(at)
    at.switch_page("pages/step.py").run()
    assert at.number_input(key="step_unit").value == 7 and at.slider(key="step_t").value == 11
    assert at.selectbox(key="pick_sequence").value == 3


@pytest.mark.parametrize("value", ["²", "9" * 5000, "-1", " 3", "3.0", "0x10", ""])
def test_a_view_choice_that_is_not_a_whole_number_is_named_calmly(value):
    at = linked({**SMALL_LINK, "unit": value})
    no_exception(at)
    [warning] = _warnings(at)
    assert "unit=" in warning and "must be a whole number from 0" in warning
    assert len(warning) < 300                                              # a 5,000-digit value is cut short
