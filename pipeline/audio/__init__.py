"""Audio helpers shared by the stages: decoding clips (`io`) and measured features."""
