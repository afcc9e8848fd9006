using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Cfn.Tests.Infrastructure;

/// <summary>JSON requests to a real cfn over loopback, as the tests' clients make them.</summary>
internal static class JsonHttp
{
    /// <summary>Sends <paramref name="json"/> (if any) with a bearer <paramref name="token"/> (if any); returns the status and the parsed body (default when empty).</summary>
    public static async Task<(HttpStatusCode Status, JsonElement Body)> SendJsonAsync(this HttpClient http, HttpMethod method, string path, string? json = null,
        string? token = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (json is not null)
        {
            request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        }

        if (token is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }

        using var response = await http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }
}
