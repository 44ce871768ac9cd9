"""noisecraft.models"""
