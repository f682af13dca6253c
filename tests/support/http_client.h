// A small blocking HTTP/1.1 client for tests (Boost.Beast), with keep-alive connection reuse.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace analytics::testing {

struct ClientResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  bool connection_reused = false;

  nlohmann::json Json() const { return nlohmann::json::parse(body, nullptr, false); }
  std::string Header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

class HttpClient {
 public:
  explicit HttpClient(int port, std::string host = "127.0.0.1");
  ~HttpClient();

  // Sends one request on the kept-alive connection (reconnecting when needed). Throws std::runtime_error on
  // transport failures, so a test sees them as errors.
  ClientResponse Request(const std::string& method, const std::string& target, const std::string& body = {},
                         const std::map<std::string, std::string>& headers = {});
  ClientResponse Get(const std::string& target, const std::string& token = {});
  ClientResponse PostJson(const std::string& target, const nlohmann::json& body, const std::string& token);

  // Connections opened so far (to check keep-alive).
  int connections_opened() const { return connections_opened_; }

 private:
  struct Connection;
  int port_;
  std::string host_;
  std::unique_ptr<Connection> connection_;
  int connections_opened_ = 0;
};

// Posts lines [from, to) of `lines` (NDJSON CloudEvents) to /api/v1/analytics/events in batches of `batch` with
// `token`; a batch that is not answered 202 with no rejection fails the test.
void PostEventLines(HttpClient& client, const std::string& token, const std::vector<std::string>& lines, size_t from,
                    size_t to, size_t batch = 2000);

// Opens a raw TCP connection (for tests that send partial or malformed requests). Returns the fd or -1.
int ConnectRaw(int port);

// `text` percent-encoded for a URL query value (letters, digits, '-', '_' and '.' kept).
std::string UrlEncode(const std::string& text);
// Sends all bytes; false on error.
bool SendAll(int fd, const std::string& data);
// Reads until the peer closes or `timeout_ms` passes.
std::string ReadAll(int fd, int timeout_ms);

}  // namespace analytics::testing
