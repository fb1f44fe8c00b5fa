"""Every session-state key more than one module reads or writes, named once.

Streamlit's session state is one dict per browser session; a key spelt differently in two
modules is a silent bug, so pages, the sidebar and the link import them from here.
"""

# The app's own state
DRAFT = "draft"              # the sidebar's settings as typed (a dict of Config fields)
CONFIG = "config"            # the sidebar's settings validated this rerun (Config, or None)
PRESENT = "present"          # presentation mode (also the toggle's widget key)
LESSON = "lesson"            # the key of the lesson loaded on the Lessons page
KEPT = "kept"                # values of widgets that survive page switches (pages/sequence.kept)
CHARTS = "_charts"           # figures already built, by chart key (pages/charts.chart)
GO_TO = "go_to"              # the page a button's callback sends the user to (app.main switches)
LINKED_RUN = "linked_run"    # run=<id> of the session's first URL, until the run is opened
LINKED_KEY = "linked_key"    # key=<owner key> of the session's first URL
LINKED_LESSON_RUNS = "linked_lesson_runs"   # runs=<id>.<id>... of a lesson link
LINKED_FOLLOW = "linked_follow"   # follow=<token> of a follow link, until the session follows it
FOLLOW_STOPPED = "follow_stopped"   # a follower's poll found the run stopped: the page reruns whole
LINKED_COMPARE = "linked_compare"   # compare=<id>.<id>... of a Compare link, until the page reads it
LINKED_SWEEP = "linked_sweep"       # sweep=<id> of a Sweep link, until the page reads it
LINKED_CLAMP = "linked_clamp"       # clamp=<JSON> of a Gates link, until the what-if panel reads it
RUNS_PROBLEM = "runs_problem"   # why the run picked on the Runs page could not be opened
YOURS_NOTE = "yours_note"    # what of your uploaded sequences was left out (said once, in the sidebar)

# Widget keys that other modules set, restore or link to
CONFIG_WIDGET = "cfg_"       # prefix of the sidebar's widgets: cfg_<field>
PICK_SOURCE = "pick_source"
PICK_SEQUENCE = "pick_sequence"
PICK_LAYER = "pick_layer"
PICK_FOLLOW = "pick_follow"
PICK_REPLAY = "pick_replay"
STEP_T = "step_t"
STRIP_GATE = "strip_gate"           # the Train page's strip: drawn in its live fragment, picked below it
STRIP_SEQUENCE = "strip_sequence"
STEP_UNIT = "step_unit"
# Look inside your own model (pages/your_model.py)
YOURS_MODEL_FILE = "yours_model_file"
YOURS_SEQUENCES_FILE = "yours_sequences_file"
YOURS_PREFIX = "yours_prefix"
YOURS_NONLINEARITY = "yours_nonlinearity"
YOURS_LAYOUT = "yours_layout"
YOURS_STEPS = "yours_steps"
YOURS_LOSS = "yours_loss"
YOURS_NAME = "yours_name"
COMPARE_PICK = "compare_pick"   # the runs on the Compare page (ids), which its link holds
SWEEP_PICK = "sweep_pick"       # the sweep the Sweep page shows (its id), which its link holds
SWEEP_RUN_PICK = "sweep_run_pick"   # the run last clicked on a Sweep chart (its id)
SWEEP_PROBLEM = "sweep_problem"     # why a sweep could not start, or a run of it could not be opened
WHATIF_CLAMP = "whatif_clamp"   # the clamp the Gates page's what-if panel shows (normal form), which its link holds
SWEEP_WAS_RUNNING = "sweep_was_running"   # the sweep the page last saw running (its end reruns the page)


def config_widget(field: str) -> str:
    """The sidebar widget's key for one Config field."""
    return CONFIG_WIDGET + field
