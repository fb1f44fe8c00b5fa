"""The Gates page's "Find units that are on", in AppTest: it opens on a time range and
threshold that find units on the probe shown, for every quantity (explorer.analysis.opening_search,
checked against brute force in test_analysis.py)."""
import pytest
from test_app import app, fresh_session, no_exception  # noqa: F401


@pytest.mark.slow
def test_find_units_opens_on_units_that_are_on_for_every_quantity():
    at = app(task="adding", seq_len=12, hidden=8)
    at.switch_page("pages/gates.py").run()
    no_exception(at)
    quantities = at.selectbox(key="find_quantity").options
    assert quantities[:2] == ["hidden", "cell"] and len(quantities) == 6
    for quantity in quantities:
        at.selectbox(key="find_quantity").set_value(quantity).run()
        no_exception(at)
        assert not any("No unit is on" in i.value for i in at.info), quantity
        start, stop = at.slider(key=f"find_range_{quantity}").value
        table = at.dataframe[-1].value
        assert stop > start and len(table) >= 1 and (table["score"] > 0).all(), quantity
