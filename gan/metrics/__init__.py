"""Sample-quality metrics: which extractors run (extractors.py), what each number means and which one counts
(protocol.py), the numbers themselves (scores.py), and the evaluator that feeds a generator through them
(evaluator.py)."""
