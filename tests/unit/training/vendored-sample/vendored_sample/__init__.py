"""Stands for the dependencies deploy ships in code/lib (onnxruntime for the container); packaging tests only
check that it travels, under a name that shadows nothing when the packed handler runs here."""
