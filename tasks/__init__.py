"""The deploy's tasks, one concern each, in the order deploy.py runs them."""
