"""noisecraft.training"""
