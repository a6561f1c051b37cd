"""The PulseAudio rig (virtual devices, espeak-ng speech, noise, echo paths) that tests and benches share."""
