"""WeChat glue: official account, OAuth binding, JS-SDK, client factory, local fake server."""
