#include "support/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <stdexcept>

#include <gtest/gtest.h>

namespace analytics::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

struct HttpClient::Connection {
  asio::io_context io;
  beast::tcp_stream stream{io};
  beast::flat_buffer buffer;
  bool open = false;
};

HttpClient::HttpClient(int port, std::string host) : port_(port), host_(std::move(host)) {}
HttpClient::~HttpClient() = default;

ClientResponse HttpClient::Request(const std::string& method, const std::string& target, const std::string& body,
                                   const std::map<std::string, std::string>& headers) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    bool reused = connection_ && connection_->open;
    if (!reused) {
      connection_ = std::make_unique<Connection>();
      beast::error_code ec;
      connection_->stream.connect(
          asio::ip::tcp::endpoint(asio::ip::make_address(host_), static_cast<unsigned short>(port_)), ec);
      if (ec) throw std::runtime_error("connect failed: " + ec.message());
      connection_->open = true;
      ++connections_opened_;
    }
    http::request<http::string_body> request{http::string_to_verb(method), target, 11};
    request.set(http::field::host, host_);
    for (const auto& [name, value] : headers) request.set(name, value);
    request.body() = body;
    request.prepare_payload();
    beast::error_code ec;
    http::write(connection_->stream, request, ec);
    http::response_parser<http::string_body> parser;
    parser.body_limit(1 << 30);
    if (!ec) http::read(connection_->stream, connection_->buffer, parser, ec);
    if (ec) {
      connection_->open = false;
      if (reused) continue;  // the server closed an idle connection: retry once on a new one
      throw std::runtime_error("request failed: " + ec.message());
    }
    auto message = parser.release();
    ClientResponse response;
    response.status = static_cast<int>(message.result_int());
    for (const auto& field : message) {
      std::string name(field.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      response.headers[name] = std::string(field.value());
    }
    response.body = message.body();
    response.connection_reused = reused;
    if (!message.keep_alive()) connection_->open = false;
    return response;
  }
  throw std::runtime_error("request failed twice");
}

ClientResponse HttpClient::Get(const std::string& target, const std::string& token) {
  std::map<std::string, std::string> headers;
  if (!token.empty()) headers["Authorization"] = "Bearer " + token;
  return Request("GET", target, {}, headers);
}

ClientResponse HttpClient::PostJson(const std::string& target, const nlohmann::json& body, const std::string& token) {
  std::map<std::string, std::string> headers = {{"Content-Type", "application/json"}};
  if (!token.empty()) headers["Authorization"] = "Bearer " + token;
  return Request("POST", target, body.dump(), headers);
}

int ConnectRaw(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool SendAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

std::string ReadAll(int fd, int timeout_ms) {
  std::string out;
  char buf[8192];
  while (true) {
    pollfd pfd{fd, POLLIN, 0};
    int ready = ::poll(&pfd, 1, timeout_ms);
    if (ready <= 0) break;
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

void PostEventLines(HttpClient& client, const std::string& token, const std::vector<std::string>& lines, size_t from,
                    size_t to, size_t batch) {
  for (size_t start = from; start < to; start += batch) {
    std::string body;
    for (size_t line = start; line < std::min(to, start + batch); ++line) body += lines[line] + "\n";
    auto response = client.Request("POST", "/api/v1/analytics/events", body,
                                   {{"Authorization", "Bearer " + token}, {"Content-Type", "application/x-ndjson"}});
    ASSERT_EQ(response.status, 202) << response.body;
    ASSERT_TRUE(response.Json()["rejected"].empty()) << response.body;
  }
}

std::string UrlEncode(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.') {
      out.push_back(static_cast<char>(c));
    } else {
      char buffer[4];
      std::snprintf(buffer, sizeof(buffer), "%%%02X", c);
      out += buffer;
    }
  }
  return out;
}

}  // namespace analytics::testing
