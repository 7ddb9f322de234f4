"""``python -m vae_anomaly``: the command line."""

from .cli import main

main()
