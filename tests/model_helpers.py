"""Helpers several test modules share."""

from edgebnn.archs.randomise import randomise_parameters

__all__ = ["randomise_parameters"]
