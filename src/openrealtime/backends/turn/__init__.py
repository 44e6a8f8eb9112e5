"""End-of-turn models: given the audio of a turn so far, how likely is it that the speaker is done."""
