// Tells the sign-in which screen it comes from: the server takes a field-only
// official on a phone-sized screen to the field app (server/views/auth.py).
document.getElementById('screen-width').value = Math.min(screen.width, screen.height);
