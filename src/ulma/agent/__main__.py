"""``python -m ulma.agent script.py [args]`` / ``python -m ulma.agent -m module``:
run a program with an idle agent that `ulma attach <pid>` can connect to."""

from ulma.agent.bootstrap import main_idle

main_idle()
