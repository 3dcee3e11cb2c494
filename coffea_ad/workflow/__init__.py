"""The stages of the ``coffea-ad`` command line as Python functions, one module per command.

Each writes into a folder what the next one reads by default:

- :func:`~coffea_ad.workflow.features.run_features`: ``features/{dataset}.parquet``, ``histograms.root``,
  ``cutflow.json``;
- :func:`~coffea_ad.workflow.train.train_to_folder`: ``model.onnx``, ``summary.json``, the estimator;
- :func:`~coffea_ad.workflow.score.run_scoring`: the feature outputs plus score columns, histograms in bins
  of score and ``scores.json``;
- :func:`~coffea_ad.workflow.fit.run_fit`: ``workspace.json``, ``fit_results.json``, plots;
- :func:`~coffea_ad.workflow.search.run_search`: the sliding-window search from a fileset or feature table to
  ``search.json``, ``index.html`` (:mod:`~coffea_ad.workflow.report`), plots, models, workspaces and datacards.

These are applications of the library stages (they may name the classes of the top-level :mod:`processors`
package, which the stages themselves never import). Import the module you need: ``train`` needs torch.
"""
