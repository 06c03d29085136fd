"""The Paradex venue protocol shared by every process that talks to it: signing, REST, WebSocket, normalisation."""
