"""Framework adapters: each submodule imports its framework and needs its extra installed.

- ``callstate.adapters.pipecat`` (``pip install callstate[pipecat]``)
- ``callstate.adapters.livekit`` (``pip install callstate[livekit]``)
- ``callstate.adapters.openai_realtime`` (``pip install callstate[openai]``)
"""
