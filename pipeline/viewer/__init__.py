"""The review viewer (`forge view`): browse items, listen to their clips, accept or reject.

`pipeline.viewer.app.create_app` builds the FastAPI app (imported lazily: FastAPI is only
needed when the viewer runs); `pipeline.viewer.reviews` records decisions.
"""
