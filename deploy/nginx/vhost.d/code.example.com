# nginx-proxy includes this in the server {} of code.example.com.
include /etc/nginx/forwarden/forwarden-server.conf;
