"""`python -m app` runs the same command line as `trialdesk`."""

from app.cli import main

main()
