"""noisecraft.sampling"""
