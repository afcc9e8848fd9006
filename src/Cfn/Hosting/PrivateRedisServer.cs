using System.ComponentModel;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Cfn.Hosting;

/// <summary>
/// The redis-server child of <c>cfn up</c> when it is given no Redis (D2): loopback only, no persistence, its files in a
/// temporary directory; killed when cfn stops (it holds nothing worth saving).
/// </summary>
internal sealed class PrivateRedisServer : IAsyncDisposable
{
    /// <summary>The one line printed when redis-server is missing.</summary>
    public const string MissingMessage = "redis-server is not installed: run `apt-get install -y redis-server` (or pass --redis HOST:PORT)";

    private readonly Process _process;
    private readonly string _directory;

    private PrivateRedisServer(Process process, int port, string directory)
    {
        _process = process;
        Port = port;
        _directory = directory;
    }

    public int Port { get; }

    public string Endpoint => $"127.0.0.1:{Port}";

    /// <summary>Starts redis-server on <paramref name="port"/> (0: a free one) and waits until it answers.</summary>
    /// <exception cref="FileNotFoundException">redis-server is not installed (<see cref="MissingMessage"/>).</exception>
    /// <exception cref="InvalidOperationException">It did not start; the message has its last log lines.</exception>
    public static async Task<PrivateRedisServer> StartAsync(int port, CancellationToken cancellationToken)
    {
        var executable = FindOnPath("redis-server") ?? throw new FileNotFoundException(MissingMessage);
        var directory = Directory.CreateTempSubdirectory("cfn-redis-").FullName;
        var chosen = port > 0 ? port : FreePort();
        var start = new ProcessStartInfo(executable,
            ["--port", chosen.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", directory, "--logfile", Path.Combine(directory, "redis.log")])
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        Process process;
        try
        {
            process = Process.Start(start) ?? throw new InvalidOperationException("redis-server did not start");
        }
        catch (Win32Exception)
        {
            throw new FileNotFoundException(MissingMessage);
        }

        var server = new PrivateRedisServer(process, chosen, directory);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (DateTime.UtcNow < deadline)
        {
            if (process.HasExited)
            {
                break;
            }

            if (await AnswersPingAsync(chosen, cancellationToken).ConfigureAwait(false))
            {
                return server;
            }

            await Task.Delay(50, cancellationToken).ConfigureAwait(false);
        }

        var log = server.LastLogLines();
        await server.DisposeAsync().ConfigureAwait(false);
        throw new InvalidOperationException($"redis-server did not start on 127.0.0.1:{chosen}: {log}");
    }

    private static async Task<bool> AnswersPingAsync(int port, CancellationToken cancellationToken)
    {
        try
        {
            using var client = new TcpClient();
            await client.ConnectAsync(IPAddress.Loopback, port, cancellationToken).ConfigureAwait(false);
            var stream = client.GetStream();
            await stream.WriteAsync("PING\r\n"u8.ToArray(), cancellationToken).ConfigureAwait(false);
            var buffer = new byte[16];
            var read = await stream.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
            return read >= 5 && System.Text.Encoding.ASCII.GetString(buffer, 0, read).StartsWith("+PONG", StringComparison.Ordinal);
        }
        catch (SocketException)
        {
            return false;
        }
        catch (IOException)
        {
            return false;
        }
    }

    private string LastLogLines()
    {
        var path = Path.Combine(_directory, "redis.log");
        return File.Exists(path) ? string.Join(" | ", File.ReadLines(path).TakeLast(3)) : "no log";
    }

    internal static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, name))
            .FirstOrDefault(File.Exists);

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                // No persistence, so nothing is lost by killing it outright.
                _process.Kill();
                await _process.WaitForExitAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            _process.Dispose();
            try
            {
                Directory.Delete(_directory, recursive: true);
            }
            catch (IOException)
            {
                // A leftover temp directory is harmless.
            }
        }
    }
}
