"""What the plans of the long jobs say the same way (make db-migrate-plan, move-files-plan,
move-database-plan): written once, used by each job's plan text."""

from __future__ import annotations


def plan_ending(plan: dict, notes: list[str], ready: str) -> list[str]:
    """How every job's plan ends: its notes, what is refused and why, or that it is ready."""
    refusals = plan.get("refusals", [])
    return ([f"  note: {note}" for note in notes] + [f"  REFUSED: {refusal}" for refusal in refusals]
            + ([] if refusals else [f"  ready: {ready}"]))
