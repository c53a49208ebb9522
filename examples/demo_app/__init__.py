"""The demo web app: streaming orders to a browser over Server-Sent Events (see ``app``)."""
