"""Polyharmonic-spline architecture search: search space, spline, proposals, controller."""
