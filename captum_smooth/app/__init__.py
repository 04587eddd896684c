"""The application built on the library: the ``captum-smooth`` command line and its parts.

* :mod:`captum_smooth.app.cli`: argument parsing and ``main``;
* :mod:`captum_smooth.app.methods`: THE method table (names, labels, defaults at equal budgets)
  read by ``explain``, ``explain-dataset``, Captum Insights and the benchmarks;
* :mod:`captum_smooth.app.loading`: model and image loading (embedded EfficientNet-Lite0,
  torchvision, TorchScript, ``module:callable``);
* :mod:`captum_smooth.app.explain`: running ``explain`` and ``demo`` (sampling to a tolerance);
* :mod:`captum_smooth.app.calibrate`: NoiseGrad's weight-noise scale per model (cached);
* :mod:`captum_smooth.app.report`: the tables, ``metrics.json`` and ``metrics.csv``;
* :mod:`captum_smooth.app.controls`: the control maps every comparison carries;
* :mod:`captum_smooth.app.dataset_cli`: the ``explain-dataset`` subcommand;
* :mod:`captum_smooth.app.insights`, :mod:`captum_smooth.app.visualization`;
* :mod:`captum_smooth.app.models` and :mod:`captum_smooth.app.data`: the demo models and images.

The library (:mod:`captum_smooth` and its other subpackages) never imports this package.
"""
