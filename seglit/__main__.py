"""``python -m seglit``: the seglit LightningCLI."""

from seglit.cli import main

if __name__ == "__main__":
    main()
