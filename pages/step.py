"""Step through: the chosen cell's equations with the real numbers of one unit at one time
step of the chosen sequence, traced with the weights as they are now."""
import streamlit as st

from explorer.stepthrough import StepThrough, step_through
from pages.common import applied_config, current_run
from pages.sequence import choose, kept

run = current_run(applied_config())
if run is None:
    st.stop()
task, trainer = run.trainer.task, run.trainer
choice = choose(run, replay=False)

if choice.built is not None:
    x, y = choice.built
else:
    probe_x, probe_y = trainer.probe_set
    x, y = probe_x[choice.sequence:choice.sequence + 1], probe_y[choice.sequence:choice.sequence + 1]
T, H = x.shape[1], trainer.config.hidden


def _move(by: int) -> None:
    # kept() below takes the widget's own value first, so setting it is enough.
    st.session_state["step_t"] = min(max(st.session_state.get("step_t", 0) + by, 0), T - 1)


back, slider, forward, pick = st.columns([0.5, 6, 0.5, 2], vertical_alignment="bottom")
back.button("◀", on_click=_move, args=(-1,), help="One time step back", key="step_back")
forward.button("▶", on_click=_move, args=(1,), help="One time step on", key="step_forward")
t = kept(slider.slider, "time step t", key="step_t", default=0, min_value=0, max_value=T - 1,
         valid=lambda v: isinstance(v, int) and 0 <= v < T)
unit = kept(pick.number_input, "unit", key="step_unit", default=0, min_value=0, max_value=H - 1,
            valid=lambda v: isinstance(v, int) and 0 <= v < H)


def _worked(model) -> tuple[StepThrough, int]:
    # Traced and read under one lock: the weights cannot change between the two.
    tr = trainer.trace(x, y)
    return step_through(model.rnn, tr, x[0].cpu().numpy(), 0, choice.layer, int(t), int(unit)), trainer.steps_done


s, weights_step = run.inspect(_worked)
labels = task.time_labels(x[0].cpu().numpy())
at = f" (input “{labels[t]}”)" if labels else ""
st.caption(f"Layer {choice.layer + 1}, unit {unit}, time step t = {t}{at}, weights as of training step "
           f"{weights_step}. Each W·v is that unit's row of the weight matrix times the vector; "
           f"‖x_t‖ = {s.input_norm:.4g} for this layer's input.")


def num(v: float) -> str:
    """A number for LaTeX, 4 significant digits."""
    text = f"{v:.4g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = rf"{mantissa}\times10^{{{int(exponent)}}}"
    return text


def n(v: float) -> str:
    """A term of a sum: negatives in parentheses."""
    return f"({num(v)})" if v < 0 else num(v)


def sigma_line(symbol: str, name: str, g, extra: str = "", peephole: bool = False) -> str:
    peep = f" + {n(g.peephole_term)}" if peephole else ""
    return (rf"{symbol}_t = \sigma(W_{{x{name}}}x_t + W_{{h{name}}}h_{{t-1}}{extra} + b_{name}) "
            rf"= \sigma({n(g.input_term)} + {n(g.recurrent_term)}{peep} + {n(g.bias)}) "
            rf"= \sigma({num(g.pre_activation)}) = \mathbf{{{num(g.value)}}}")


h_prev = rf"h_{{t-1}} = {num(s.h_previous)}"
if s.cell in ("lstm", "peephole"):
    g = s.gates
    peep = s.cell == "peephole"
    st.latex(rf"{h_prev}, \quad c_{{t-1}} = {num(s.c_previous)}")
    st.latex(sigma_line("i", "i", g["input"], r" + w_{ci} c_{t-1}" if peep else "", peep))
    st.latex(sigma_line("f", "f", g["forget"], r" + w_{cf} c_{t-1}" if peep else "", peep))
    c = g["candidate"]
    st.latex(rf"g_t = \tanh(W_{{xg}}x_t + W_{{hg}}h_{{t-1}} + b_g) = \tanh({n(c.input_term)} + "
             rf"{n(c.recurrent_term)} + {n(c.bias)}) = \tanh({num(c.pre_activation)}) = \mathbf{{{num(c.value)}}}")
    st.latex(rf"c_t = f_t\,c_{{t-1}} + i_t\,g_t = {n(g['forget'].value)}\cdot{n(s.c_previous)} + "
             rf"{n(g['input'].value)}\cdot{n(c.value)} = \mathbf{{{num(s.cell_state)}}}")
    st.latex(sigma_line("o", "o", g["output"], r" + w_{co} c_t" if peep else "", peep))
    st.latex(rf"h_t = o_t \tanh(c_t) = {n(g['output'].value)}\cdot\tanh({num(s.cell_state)}) = "
             rf"\mathbf{{{num(s.hidden)}}}")
elif s.cell == "gru":
    r, z, c = s.gates["reset"], s.gates["update"], s.gates["candidate"]
    st.latex(h_prev)
    st.latex(sigma_line("r", "r", r))
    st.latex(sigma_line("z", "z", z))
    st.latex(rf"n_t = \tanh(W_{{xn}}x_t + b_{{in}} + r_t (W_{{hn}}h_{{t-1}} + b_{{hn}})) = \tanh({n(c.input_term)} + "
             rf"{n(c.bias)} + {n(r.value)}\cdot({n(c.recurrent_term)} + {n(c.recurrent_bias)})) = "
             rf"\tanh({num(c.pre_activation)}) = \mathbf{{{num(c.value)}}}")
    st.latex(rf"h_t = (1 - z_t)\,n_t + z_t\,h_{{t-1}} = (1 - {n(z.value)})\cdot{n(c.value)} + "
             rf"{n(z.value)}\cdot{n(s.h_previous)} = \mathbf{{{num(s.hidden)}}}")
else:
    g = s.gates["hidden"]
    act = r"\tanh" if s.cell == "rnn_tanh" else r"\mathrm{ReLU}"
    st.latex(h_prev)
    st.latex(rf"h_t = {act}(W_{{xh}}x_t + W_{{hh}}h_{{t-1}} + b) = {act}({n(g.input_term)} + "
             rf"{n(g.recurrent_term)} + {n(g.bias)}) = {act}({num(g.pre_activation)}) = \mathbf{{{num(g.value)}}}")

with st.container(key="step_check"):
    st.caption(f"The trace recorded h_t = {s.traced_hidden:.6g} for this unit; recomputed from the numbers "
               f"above: {s.hidden:.6g}.")

NOTES = {
    "lstm": "PyTorch's LSTM: b is b_ih + b_hh. The seed article writes its LSTM with peepholes "
            "(W_ci c_{t−1} in i_t and f_t, W_co c_t in o_t) and also gives the candidate a W_cc c_{t−1} "
            "term, which neither Gers & Schmidhuber's peephole LSTM nor PyTorch has; choose the peephole "
            "cell to see the peepholes.",
    "peephole": "Peepholes as Gers & Schmidhuber (2000): one weight per unit (w_ci, w_cf, w_co), the cell "
                "state c_{t−1} looking into i_t and f_t and c_t into o_t. The seed article writes them as "
                "matrices W_c· and adds a W_cc c_{t−1} term to the candidate, which the paper does not have.",
    "gru": "PyTorch's GRU: an update gate z_t near 1 keeps the old state, and the reset gate multiplies "
           "W_hn h_{t−1} + b_hn. The seed article's GRU is written the other way round, "
           "h_t = (1 − z_t) h_{t−1} + z_t h̃_t (z near 1 takes the new candidate), applies r_t to h_{t−1} "
           "before W_hh, and its candidate multiplies W_xh by h̃_t where x_t is meant.",
    "rnn_tanh": "A plain RNN: no gates, so nothing decides what to keep; b is b_ih + b_hh.",
    "rnn_relu": "A plain RNN with ReLU: no gates; b is b_ih + b_hh.",
}
st.info(NOTES[s.cell])
