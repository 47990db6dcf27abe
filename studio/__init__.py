"""The Gradio app's pieces: `settings` (flags and environment limits), `common` (uploads,
predictors, downloads, errors) and one module per tab, each with its handlers (the API
endpoints) and a `build(model)` that draws the tab. `app.py` assembles the page."""
