"""The adversarial-example engine: everything the researcher runs before a study exists.

`engine` owns the data (the embedded 5,000 MNIST digits and IDX data sets such as full MNIST
and Fashion-MNIST), the model zoo and its training regimes (normal, adversarially trained,
distilled, input-gradient-regularized), the attacks, robustness evaluation, and
`engine generate-stimuli`, which writes a stimulus set (images plus a manifest valid against
`contracts/stimulus_manifest.v1.schema.json`). It never imports `study` or `analysis`.
"""

__version__ = "0.1.0"
