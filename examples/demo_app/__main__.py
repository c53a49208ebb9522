"""``python -m examples.demo_app``: serve the demo (see ``examples.demo_app.app``)."""

from examples.demo_app.app import main

main()
