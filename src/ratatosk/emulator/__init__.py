"""The Twilio emulator (emulator layer): a pure behaviour model and its HTTP face.

``model`` holds the model (no I/O); ``app`` serves it with aiohttp on
loopback (``callbacks`` and ``control`` are the face's I/O helpers). Nothing
is imported here, so ``ratatosk.emulator.model`` never drags in aiohttp.
"""
