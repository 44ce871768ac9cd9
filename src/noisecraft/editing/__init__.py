"""noisecraft.editing"""
