"""Joint training, the upper bound: every training sample seen so far, at every experience."""

from __future__ import annotations

from replaycli.methods.base import Method


class Joint(Method):
    """At each experience the memory takes the whole experience and the model trains `epochs`
    passes on all of it: every sample of the experiences so far, shuffled together (the cumulative
    upper bound; Avalanche's `JointTraining` trains once, on the whole stream). Plain cross-entropy;
    no reset between experiences. The buffer must hold the whole stream (`holds_everything`)."""

    protocols = ("after_experience",)
    batches = True
    trains_on_memory = True
    holds_everything = True
