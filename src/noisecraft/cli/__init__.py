"""noisecraft.cli"""
