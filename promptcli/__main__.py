"""`python -m promptcli …`, and so `torchrun -m promptcli run …` / `accelerate launch -m promptcli run …`."""
from promptcli.cli import main

if __name__ == "__main__":
    main()
