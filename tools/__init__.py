"""Commands a person runs by hand on the study's results (predict, ...): not pipeline stages.

Nothing in `dvc.yaml` depends on this package, so editing it reruns nothing. It imports the
stages' helpers; the stages never import it.
"""
