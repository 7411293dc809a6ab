"""How students are measured, one implementation each: accuracy (:mod:`classification`), parameter
count and latency (:mod:`cost`), distribution distances (:mod:`distances`) with their excess over the
data's noise floor (:mod:`excess`), classifier features (:mod:`features`), the feature classifier of
image metrics (:mod:`classifier`) and the scorer of generated samples (:mod:`scorer`).

Import the module you need: this package imports none of them, so a classification run never
loads the optimal-transport library the distances use.
"""
